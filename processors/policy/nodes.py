"""The policy file as YAML nodes that remember their line, so any value can fail as FILE:LINE key.

The YAML is composed into nodes (not constructed into dicts) so each value keeps its
line; `Node` reads one value of the expected shape or raises the `ConfigError` for
its place.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import NoReturn, TypeVar

import yaml

from processors.policy.compose import compose, scalar
from processors.policy.model import Keywords, keywords, parse_duration
from schemas.errors import ConfigError

__all__ = ["Node", "frozen", "root"]

T = TypeVar("T")


def frozen(pairs: Mapping[str, T]) -> Mapping[str, T]:
    """A read-only copy of a mapping, for the immutable Policy."""
    return MappingProxyType(dict(pairs))


def root(text: str, source: str) -> Node:
    """The top node of a policy text; `source` is what errors call the file."""
    node = compose(text, source)
    if node is None:
        raise ConfigError("the policy file is empty", f"{source}:1")
    return Node(node, "", source, node.start_mark.line + 1)


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML node with its dotted key and line, so any value can fail with its place."""

    node: yaml.Node
    path: str
    source: str
    line: int

    def fail(self, reason: str) -> NoReturn:
        """Raise the ConfigError for this place."""
        raise ConfigError(reason, f"{self.source}:{self.line} {self.path}".rstrip())

    def _child(self, name: str, node: yaml.Node, line: int) -> Node:
        return Node(node, f"{self.path}.{name}" if self.path else name, self.source, line)

    def entries(self) -> list[tuple[str, Node]]:
        """The (name, value) pairs of a mapping, in file order."""
        if not isinstance(self.node, yaml.MappingNode):
            self.fail("must be a mapping")
        pairs: dict[str, Node] = {}
        for key, value in self.node.value:
            at = self._child(str(key.value), value, key.start_mark.line + 1)
            if not isinstance(key, yaml.ScalarNode) or not key.value:
                at.fail("keys must be names")
            if key.value in pairs:
                at.fail(f"duplicate key {key.value!r}")
            pairs[key.value] = at
        return list(pairs.items())

    def fields(self, required: Collection[str] = (), optional: Collection[str] = ()) -> dict[str, Node]:
        """A mapping with a fixed set of keys: unknown keys and missing ones are errors."""
        found = dict(self.entries())
        for name, at in found.items():
            if name not in required and name not in optional:
                known = ", ".join([*required, *optional])
                at.fail(f"unknown key {name!r}; expected one of: {known}")
        for name in required:
            if name not in found:
                self.fail(f"missing key {name!r}")
        return found

    def items(self) -> list[Node]:
        """The elements of a sequence."""
        if not isinstance(self.node, yaml.SequenceNode):
            self.fail("must be a list")
        return [Node(n, f"{self.path}[{i}]", self.source, n.start_mark.line + 1)
                for i, n in enumerate(self.node.value)]

    def text(self) -> str:
        """A scalar read as text (an unquoted `no` is the word, not a boolean)."""
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag.endswith(":null"):
            self.fail("must be text")
        return str(self.node.value)

    def strings(self) -> frozenset[str]:
        """A list of texts."""
        return frozenset(item.text() for item in self.items())

    def value(self, kind: type[T], described: str) -> T:
        """A scalar of one YAML type (int, float, bool, date)."""
        if isinstance(self.node, yaml.ScalarNode):
            try:
                result = scalar(self.node)
            except ValueError:
                self.fail(f"must be {described}")
            if kind is float and type(result) is int:
                result = float(result)
            if type(result) is kind:
                return result
        self.fail(f"must be {described}")

    def duration(self) -> timedelta:
        """A duration like 2h or 30m."""
        try:
            return parse_duration(self.text())
        except ValueError as e:
            self.fail(str(e))

    def ref(self, known: Collection[str], kind: str) -> str:
        """A name that must exist in another section."""
        name = self.text()
        if name not in known:
            self.fail(f"unknown {kind} {name!r}; known: {', '.join(sorted(known)) or 'none'}")
        return name

    def keywords(self) -> Keywords:
        """A list of words or phrases, compiled once for whole-word caseless matching."""
        try:
            return keywords([item.text() for item in self.items()])
        except (ValueError, re.error) as e:
            self.fail(str(e))

    def template(self, placeholders: Collection[str]) -> str:
        """A message text whose {placeholders} must all be among `placeholders`."""
        text = self.text()
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text)
                      if name is not None]
        except ValueError as e:
            self.fail(f"broken placeholder: {e}")
        for name, spec, conv in fields:
            if name not in placeholders or spec or conv:
                self.fail(f"unknown placeholder {{{name}}}; use {', '.join(sorted(placeholders))}")
        return text

    def by_channel_and_tier(self, channels: Collection[str] | None,
                            tiers: Collection[str]) -> dict[str, list[tuple[str, Node]]]:
        """Templates keyed by channel, then by tier or "default"; both names are checked."""
        # channels None: no registry was given, so any channel name is accepted
        found: dict[str, list[tuple[str, Node]]] = {}
        for channel, by_tier in self.entries():
            if channels is not None and channel not in channels:
                by_tier.fail(f"unknown channel {channel!r}; known: {', '.join(sorted(channels))}")
            for tier, spec in by_tier.entries():
                if tier != "default" and tier not in tiers:
                    spec.fail(f"unknown tier {tier!r}; use a tier name or default")
            found[channel] = by_tier.entries()
        return found
