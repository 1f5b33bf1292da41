"""Move the tagged key families to the tags of a partition count: an upgrade, or partitions added.

Run with the workers stopped (`switchboard redis retag`). Every key of a tagged family
(processors.stores.tags) is moved to the tag its own id has under the new count; every
SLA due time moves to its customer's due set. Keys are moved as DUMP, RESTORE, DEL, so a
move across Cluster slots works too, and a rerun finds nothing left to do: a key already
where it belongs is left alone, a move cut short (restored, not yet deleted) is finished.
A target that exists with other content is a conflict, left as it is and reported. Last,
`<ns>:layout` records the count, which the workers check before they start.

Dispatch's item ledgers (`ledger:<conversation>|<source>`) are tagged by their
conversation, which their names hold before the `|`. Their untagged names before that
(`handoff:…`) do not hold it, so they cannot be placed: they are counted as stranded and
left to expire (their TTL is the dedupe window; dispatch delivers at least once, with
delivery ids receivers dedupe on). The deferred replies' two keys move to their fixed
tag `{deferred}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from processors.stores.tags import Tags
from schemas.errors import ConfigError

__all__ = ["FAMILIES", "Layout", "Retagged", "check_layout", "layout_key", "retag", "retarget"]

# the families whose key ends in the id that picks the tag (see processors.stores)
FAMILIES = frozenset({"history", "recent", "sla", "profile", "identities", "suggested", "identity", "moving",
                      "card", "claim", "thread", "tool-thread", "ledger", "reply"})
# the families whose id is `<conversation>|<own id>`, tagged by the conversation
_BY_CONVERSATION = frozenset({"ledger"})
# the names before decision 0021 of the keys that now carry the fixed tag `{deferred}`
_RENAMED = {"deferred": "{deferred}:due", "deferred:messages": "{deferred}:messages"}
_TAG = re.compile(r"\{p\d+\}:")


@dataclass(slots=True)
class Retagged:
    """What a run did: keys moved, SLA due times moved, conflicts left, keys already in place."""

    moved: int = 0
    due_moved: int = 0
    conflicts: int = 0
    in_place: int = 0
    conflicting: list[str] | None = None
    # dispatch's item ledgers from before the tags: no conversation in their name
    stranded: int = 0


def layout_key(namespace: str) -> str:
    """Where the tag count the keys are laid out for is recorded."""
    return f"{namespace}:layout"


def _parts(key: str, namespace: str) -> tuple[str, str, str] | None:
    """(head, family, id) of a key under the namespace, with any tag taken out; None if not ours."""
    if not key.startswith(namespace + ":"):
        return None
    rest = key[len(namespace) + 1:]
    head = ""
    if rest.startswith("routed:"):  # the brain's claims live under `<ns>:routed`
        head, rest = "routed:", rest[len("routed:"):]
    tag = _TAG.match(rest)
    if tag:
        rest = rest[tag.end():]
    family, sep, ident = rest.partition(":")
    if rest == "sla-due" and not head:
        return head, family, ""
    if not sep or not ident or family not in FAMILIES or (head and family != "claim"):
        return None
    return head, family, ident


def retarget(key: str, namespace: str, tags: Tags) -> str | None:
    """The key's name under `tags`, for a key of a tagged family; None for any other key."""
    parts = _parts(key, namespace)
    if parts is None or parts[1] == "sla-due":
        return None
    head, family, ident = parts
    tag_id = ident
    if family in _BY_CONVERSATION:
        tag_id, sep, _ = ident.partition("|")
        if not sep:
            return None  # a ledger with no conversation: see `_stranded`
    return f"{namespace}:{head}{tags.of(tag_id)}{family}:{ident}"


def _stranded(key: str, namespace: str) -> bool:
    """A dispatch ledger from before the tags, which names no conversation to tag it by."""
    return key.startswith(f"{namespace}:handoff:")


def _is_due_set(key: str, namespace: str) -> bool:
    parts = _parts(key, namespace)
    return parts is not None and parts[1] == "sla-due"


async def _move(redis: Any, old: str, new: str, done: Retagged) -> None:
    data = await redis.dump(old)
    if data is None:  # gone since the scan saw it: moved by an earlier pass
        return
    ttl = await redis.pttl(old)
    try:
        await redis.restore(new, max(ttl, 0), data)
    except ResponseError as e:
        if "BUSYKEY" not in str(e):
            raise
        if await redis.dump(new) != data:
            done.conflicts += 1
            done.conflicting = [*(done.conflicting or []), old]
            return
    await redis.delete(old)
    done.moved += 1


async def _move_due(redis: Any, key: str, namespace: str, tags: Tags, done: Retagged) -> None:
    async for member, score in redis.zscan_iter(key):
        customer = (member.decode() if isinstance(member, bytes) else member).split("|", 1)[0]
        target = f"{namespace}:{tags.of(customer)}sla-due"
        if target != key:
            await redis.zadd(target, {member: score})
            await redis.zrem(key, member)
            done.due_moved += 1


async def retag(redis: Any, namespace: str, tags: Tags, *, count: int = 10_000) -> Retagged:
    """Move every tagged family's key under `namespace` to its tag under `tags`."""
    done = Retagged()
    due_sets = []
    async for raw in redis.scan_iter(match=f"{namespace}:*", count=count):
        key = raw.decode() if isinstance(raw, bytes) else raw
        if _is_due_set(key, namespace):
            due_sets.append(key)
            continue
        target = retarget(key, namespace, tags)
        renamed = _RENAMED.get(key[len(namespace) + 1:])
        if renamed is not None:
            target = f"{namespace}:{renamed}"
        if target is None:
            done.stranded += _stranded(key, namespace)
            continue
        if target == key:
            done.in_place += 1
        else:
            await _move(redis, key, target, done)
    for key in dict.fromkeys(due_sets):
        await _move_due(redis, key, namespace, tags, done)
    if not done.conflicts:
        await redis.set(layout_key(namespace), str(tags.partitions))
    return done


@dataclass(frozen=True, slots=True)
class Layout:
    """What the keys under a namespace are laid out for, as the workers find it at start."""

    recorded: int | None
    # `<ns>:backlog` is written by every deployment that has routed a message
    used: bool

    def refusal(self, tags: Tags) -> str | None:
        """Why workers tagging by `tags` must not start on these keys, or None when they may."""
        fresh = self.recorded is None and not (self.used and tags.partitions)
        if fresh or self.recorded == tags.partitions:
            return None
        was = "untagged keys" if self.recorded is None else f"keys tagged for {self.recorded} partitions"
        return (f"Redis holds {was}, the workers tag for {tags.partitions}: stop the workers and run "
                f"`switchboard redis retag --partitions {tags.partitions}` (decision 0021)")

    @classmethod
    async def read(cls, redis: Any, namespace: str) -> Layout:
        """The recorded layout and whether the namespace was used before."""
        recorded = await redis.get(layout_key(namespace))
        used = bool(await redis.exists(f"{namespace}:backlog"))
        return cls(None if recorded is None else int(recorded), used)


async def check_layout(redis: Any, namespace: str, tags: Tags) -> None:
    """Refuse to start workers on keys laid out for other tags; record the layout of a new namespace."""
    refusal = (await Layout.read(redis, namespace)).refusal(tags)
    if refusal is not None:
        raise ConfigError(refusal)
    await redis.set(layout_key(namespace), str(tags.partitions), nx=True)
