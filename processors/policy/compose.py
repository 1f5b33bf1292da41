"""The policy text composed into YAML nodes by PyYAML's safe loader, with bounded work.

A hostile or careless edit must be refused, never crash or stall the workers that reload
it. `compose` is PyYAML's `SafeLoader` with three limits enforced while it composes, so
a file is refused as soon as it crosses one: nesting depth, values after aliases are
expanded (a "billion laughs" file), and tags (only the standard YAML types, whose text
must read as that type); text that could never be encoded (an escaped lone surrogate)
is refused too. Every refusal, and every error PyYAML itself raises, is a
`ConfigError` naming FILE:LINE and, where known, the dotted key.
"""

from __future__ import annotations

from typing import Final, NoReturn

import yaml

from schemas.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_VALUES", "compose", "scalar"]

MAX_DEPTH: Final = 32  # the deepest policy section nests about 7 levels
MAX_VALUES: Final = 10_000  # the example policy has about 500; each alias counts in full
_STANDARD = "tag:yaml.org,2002:"
_KINDS: Final[dict[str, type[yaml.Node]]] = {
    **{_STANDARD + name: yaml.ScalarNode for name in ("str", "int", "float", "bool", "null", "timestamp")},
    _STANDARD + "seq": yaml.SequenceNode,
    _STANDARD + "map": yaml.MappingNode,
}
_KIND_NAMES: Final[dict[type[yaml.Node], str]] = {
    yaml.ScalarNode: "a single value", yaml.SequenceNode: "a list", yaml.MappingNode: "a mapping"}
# what PyYAML's constructors raise on text that does not fit its tag: `!!bool x` is a
# KeyError, `!!timestamp x` an AttributeError, a 5,000-digit int a ValueError
_CONSTRUCT_ERRORS = (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, OverflowError)


class _Refused(yaml.MarkedYAMLError):
    """A limit crossed while composing, at its place in the file."""

    def __init__(self, reason: str, line: int, path: str) -> None:
        super().__init__(problem=reason)
        self.line = line
        self.path = path


def scalar(node: yaml.ScalarNode) -> object:
    """The Python value of a scalar node; ValueError when its text does not read as its type."""
    try:
        # a fresh constructor: a shared one would keep every node of every reload
        return yaml.constructor.SafeConstructor().construct_object(node)
    except _CONSTRUCT_ERRORS as e:
        raise ValueError(f"{node.value[:40]!r} is not a valid {_short(node.tag)}") from e


class _Loader(yaml.SafeLoader):
    """SafeLoader refusing unknown tags, deep nesting and alias expansion past the limits."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._keys: list[str] = []  # the dotted key of the node being composed, by level
        self._sizes: dict[int, int] = {}  # id(node) -> its values with aliases expanded
        self._values = 0  # values composed so far, each alias counted in full

    def compose_node(self, parent: yaml.Node | None, index: int | yaml.Node | None) -> yaml.Node | None:
        event = self._next_event()
        self._keys.append(_key(parent, index))
        try:
            if isinstance(event, yaml.AliasEvent):
                return self._alias(parent, index)
            if len(self._keys) > MAX_DEPTH:
                self._refuse(f"nests deeper than {MAX_DEPTH} levels", event)
            self._count(1, event)  # counted as it starts, so a long list stops where it crosses
            tag = getattr(event, "tag", None)
            node = super().compose_node(parent, index)  # type: ignore[arg-type]
            assert node is not None  # an event other than an alias always composes a node
            if tag not in (None, "!"):
                self._check_tag(node)
            if isinstance(node, yaml.ScalarNode):
                self._check_text(node)
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
            return node
        finally:
            self._keys.pop()

    def _alias(self, parent: yaml.Node | None, index: int | yaml.Node | None) -> yaml.Node:
        event = self._next_event()
        node = super().compose_node(parent, index)  # type: ignore[arg-type]
        assert node is not None and isinstance(event, yaml.AliasEvent)
        if id(node) not in self._sizes:
            self._refuse(f"alias *{event.anchor} is inside its own anchor", event)
        self._count(self._sizes[id(node)], event)
        return node

    def _count(self, values: int, at: yaml.Event) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            self._refuse(f"more than {MAX_VALUES} values in the policy (an alias counts every value it "
                         "repeats)", at)

    def _check_tag(self, node: yaml.Node) -> None:
        kind = _KINDS.get(node.tag)
        if kind is None:
            self._refuse(f"unknown YAML tag {_short(node.tag)}; a policy uses plain values", node)
        if not isinstance(node, kind):
            self._refuse(f"tag {_short(node.tag)} needs {_KIND_NAMES[kind]}", node)
        if isinstance(node, yaml.ScalarNode):
            try:
                scalar(node)
            except ValueError as e:
                self._refuse(str(e), node)

    def _check_text(self, node: yaml.ScalarNode) -> None:
        try:
            node.value.encode("utf-8")
        except UnicodeEncodeError:
            # a "\ud800" escape: such text could never be written to a topic or sent to anyone
            self._refuse("has an unpaired surrogate (\\ud800-\\udfff); write the character itself", node)

    def _next_event(self) -> yaml.Event:
        return self.peek_event()  # type: ignore[no-untyped-call, no-any-return]

    def _refuse(self, reason: str, at: yaml.Node | yaml.Event) -> NoReturn:
        line = at.start_mark.line + 1 if at.start_mark is not None else 1
        raise _Refused(reason, line, "".join(self._keys).removeprefix("."))


def _short(tag: str) -> str:
    """A tag as it is written: `!!int` for YAML's own, `!foo` for others."""
    return "!!" + tag.removeprefix(_STANDARD) if tag.startswith(_STANDARD) else tag


def _key(parent: yaml.Node | None, index: int | yaml.Node | None) -> str:
    """The dotted-key step from `parent` to its child at `index` (as load.py's paths spell it)."""
    if isinstance(index, int):
        return f"[{index}]"
    if isinstance(index, yaml.ScalarNode):
        return f".{index.value}"
    return "" if parent is None or index is None else ".?"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def compose(text: str, source: str) -> yaml.Node | None:
    """The YAML node tree of a policy text (None when empty); `source` is what errors call the file."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks every character already
        return loader.get_single_node()
    except _Refused as e:
        raise ConfigError(e.problem or "refused", f"{source}:{e.line} {e.path}".rstrip()) from e
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark is not None else 1
        raise ConfigError(f"not valid YAML: {e.problem}", f"{source}:{line}") from e
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"not valid YAML: character U+{e.character:04X} is not allowed",
                          f"{source}:{line}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", f"{source}:1") from e
    finally:
        if loader is not None:
            loader.dispose()
