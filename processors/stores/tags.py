"""Hash tags: every customer's keys in the Redis Cluster slot of its Kafka partition.

A key's tag is `{p<N>}`, N the partition Kafka's default partitioner gives the key's own
id (murmur2 of its bytes, made positive, modulo the partition count): the customer id of
`history:`, `recent:`, `sla:`, `profile:`, `identities:`, `suggested:`; the identity of
`identity:`; the conversation of `card:`; the event of `claim:`; the thread of `thread:`.
The brain's topics are keyed by customer id, so one worker's batch from one partition
touches one tag's customer keys. On a Cluster a Lua call over many keys is split per
tag (`Batch.split`), still one pipeline; on one node it stays one call (`pipeline`). A key's tag follows
from its own name, which is what lets `switchboard redis retag` move keys to a new
partition count (decision 0021).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from murmurhash2 import murmurhash2
from redis.asyncio.cluster import RedisCluster

__all__ = ["UNTAGGED", "Batch", "Merge", "Tags", "hash_tag", "key_partition", "murmur2", "on_cluster",
           "partition_of", "pipeline", "split"]

_SEED = 0x9747B28C  # Kafka's
# ids whose tag a Tags remembers: a batch asks again for the same customers' keys
_REMEMBERED = 65_536


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data`, unsigned 32 bits as aiokafka answers it (in C: a key costs 0.3 µs)."""
    return murmurhash2(data, _SEED)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record's key among `partitions`."""
    return (murmurhash2(key, _SEED) & 0x7FFFFFFF) % partitions


def partition_of(key: str, partitions: int) -> int:
    """The partition of the key `key` (UTF-8), as `key_partition`."""
    return (murmurhash2(key.encode(), _SEED) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Tags:
    """How keys are tagged: by partition among `partitions`, or not at all when it is 0."""

    partitions: int
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _known: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_segments", tuple(f"{{p{p}}}:" for p in range(self.partitions)))
        object.__setattr__(self, "_known", {})

    def of(self, key_id: str) -> str:
        """The tag segment (`{p7}:`) to put before the family of a key whose id is `key_id`."""
        if not self.partitions:
            return ""
        segment = self._known.get(key_id)
        if segment is None:
            if len(self._known) >= _REMEMBERED:
                self._known.clear()
            segment = self._known[key_id] = self._segments[partition_of(key_id, self.partitions)]
        return segment

    def every(self) -> list[str]:
        """Every tag segment there is, one per partition (just "" when untagged)."""
        return list(self._segments) or [""]


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
# how a split call's answers become one: the parts (indices into its keys) and their answers
Merge = Callable[[list[list[int]], list[Any]], Any]


@dataclass(slots=True)
class Batch:
    """A pipeline whose many-key calls are split per hash tag; `execute` answers one result per call.

    A split call's answers come back merged: lists in the order of the keys, counts summed,
    or as the call's own `merge` says.
    """

    pipe: Any
    _calls: list[tuple[list[list[int]], Merge] | None] = field(default_factory=list)

    def split(self, keys: Sequence[str], queue: Queue, merge: Merge | None = None) -> None:
        """Queue `queue(pipe, indices)` once per tag among `keys`; one answer for them all.

        Untagged keys stay together in one call: one node only (decision 0021).
        """
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(hash_tag(key), []).append(i)
        parts = list(groups.values())
        for part in parts:
            queue(self.pipe, part)
        self._calls.append((parts, merge or _merge))

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
        return [next(raw) if call is None else call[1](call[0], [next(raw) for _ in call[0]])
                for call in calls]


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


def on_cluster(redis: Any) -> bool:
    """True for a Redis Cluster client: a Lua call there may touch keys of one slot only."""
    return isinstance(redis, RedisCluster)


def pipeline(redis: Any) -> Any:
    """A pipeline for one round trip of a batch: on a Cluster a `Batch`, on one node a plain pipeline.

    One node holds every slot, so splitting its calls per tag would only cost: there
    each many-key call stays one call.
    """
    pipe = redis.pipeline(transaction=False)
    return Batch(pipe) if on_cluster(redis) else pipe


def split(pipe: Any, keys: Sequence[str], queue: Queue, merge: Merge | None = None) -> None:
    """Queue a many-key call per hash tag on a `Batch`; on a plain pipeline, as one call.

    Without keys its answer is an empty list either way. `merge` makes one answer of a
    split call's (lists in key order and counts summed when it is None).
    """
    if isinstance(pipe, Batch):
        pipe.split(keys, queue, merge)
    elif keys:
        queue(pipe, list(range(len(keys))))
    else:
        pipe.eval("return {}", 0)  # as a `Batch` answers: nothing to ask Redis, but one answer
