"""Hash tags: every customer's keys in the Redis Cluster slot of its Kafka partition.

A key's tag is `{p<N>}`, N the partition Kafka's default partitioner gives the key's own
id (murmur2 of its bytes, made positive, modulo the partition count): the customer id of
`history:`, `recent:`, `sla:`, `profile:`, `identities:`, `suggested:`; the identity of
`identity:`; the conversation of `card:`; the event of `claim:`; the thread of `thread:`.
The brain's topics are keyed by customer id, so one worker's batch from one partition
touches one tag's customer keys, and a Lua call over many keys is split per tag
(`Batch.split`): still one pipeline, one round trip on one node. A key's tag follows
from its own name, which is what lets `switchboard redis retag` move keys to a new
partition count (decision 0021).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["UNTAGGED", "Batch", "Tags", "hash_tag", "key_partition", "murmur2", "partition_of", "split"]

_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` (seed 0x9747b28c), unsigned 32 bits as aiokafka answers it."""
    length = len(data)
    whole = length >> 2
    h = 0x9747B28C ^ length
    m = _M
    # the words unpacked at once: a third of the cost of slicing them one by one
    for word in _WORDS[whole](data) if whole < len(_WORDS) else struct.unpack_from(f"<{whole}I", data):
        k = (word * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * m) & 0xFFFFFFFF)
    at = whole << 2
    rest = length & 3
    if rest == 3:
        h ^= data[at + 2] << 16
    if rest >= 2:
        h ^= data[at + 1] << 8
    if rest:
        h = ((h ^ data[at]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


_WORDS = [struct.Struct(f"<{n}I").unpack_from for n in range(64)]


@lru_cache(maxsize=1 << 16)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record's key among `partitions`."""
    # a customer recurs with each of its messages: the hash in Python costs microseconds
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_of(key: str, partitions: int) -> int:
    """The partition of the key `key` (UTF-8), as `key_partition`."""
    return key_partition(key.encode(), partitions)


@dataclass(frozen=True, slots=True)
class Tags:
    """How keys are tagged: by partition among `partitions`, or not at all when it is 0."""

    partitions: int

    def of(self, key_id: str) -> str:
        """The tag segment (`{p7}:`) to put before the family of a key whose id is `key_id`."""
        return f"{{p{partition_of(key_id, self.partitions)}}}:" if self.partitions else ""

    def every(self) -> list[str]:
        """Every tag segment there is, one per partition (just "" when untagged)."""
        return [f"{{p{p}}}:" for p in range(self.partitions)] or [""]


UNTAGGED = Tags(0)


def hash_tag(key: str) -> str:
    """The hash tag of a key, as Redis Cluster finds it (inside its first `{...}`), or "" if none."""
    start = key.find("{")
    if start >= 0:
        stop = key.find("}", start + 1)
        if stop > start + 1:
            return key[start + 1:stop]
    return ""


Queue = Callable[[Any, list[int]], None]


@dataclass(slots=True)
class Batch:
    """A pipeline whose many-key calls are split per hash tag; `execute` answers one result per call.

    A split call's answers come back merged: lists in the order of the keys, counts summed.
    """

    pipe: Any
    _calls: list[list[list[int]] | None] = field(default_factory=list)

    def split(self, keys: Sequence[str], queue: Queue) -> None:
        """Queue `queue(pipe, indices)` once per tag among `keys`; one answer for them all.

        Untagged keys stay together in one call: one node only (decision 0021).
        """
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(hash_tag(key), []).append(i)
        parts = list(groups.values())
        for part in parts:
            queue(self.pipe, part)
        self._calls.append(parts)

    def __getattr__(self, name: str) -> Callable[..., Batch]:
        command = getattr(self.pipe, name)

        def queued(*args: Any, **kwargs: Any) -> Batch:
            command(*args, **kwargs)
            self._calls.append(None)
            return self
        return queued

    def __len__(self) -> int:
        return len(self._calls)

    async def execute(self) -> list[Any]:
        """Send everything queued in one round trip; one answer per call, split calls merged."""
        raw: Iterator[Any] = iter(await self.pipe.execute())
        calls, self._calls = self._calls, []
        return [next(raw) if parts is None else _merge(parts, [next(raw) for _ in parts]) for parts in calls]


def _merge(parts: list[list[int]], answers: list[Any]) -> Any:
    if not answers:
        return []
    if not isinstance(answers[0], list):
        return sum(answers)
    merged: list[Any] = [None] * sum(len(p) for p in parts)
    for part, answer in zip(parts, answers, strict=True):
        for i, value in zip(part, answer, strict=True):
            merged[i] = value
    return merged


def split(pipe: Any, keys: Sequence[str], queue: Queue) -> None:
    """Queue a many-key call per hash tag on a `Batch`; on a plain pipeline, as one call."""
    if isinstance(pipe, Batch):
        pipe.split(keys, queue)
    else:
        queue(pipe, list(range(len(keys))))
