"""Hash tags: Kafka's partition of a key, and a pipeline whose calls split per tag."""

from __future__ import annotations

import random
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2

from processors.stores.tags import UNTAGGED, Batch, Tags, hash_tag, murmur2, partition_of, split


def test_murmur2_is_kafkas_for_many_keys() -> None:
    draw = random.Random(15)
    for _ in range(20_000):
        data = draw.randbytes(draw.randint(0, 300))
        assert murmur2(data) == kafka_murmur2(data)


def test_partition_is_the_one_aiokafkas_default_partitioner_picks() -> None:
    draw = random.Random(21)
    partitioner = DefaultPartitioner()
    for n in (1, 3, 4, 12, 16, 64):
        everyone = list(range(n))
        for i in range(2_000):
            key = f"cus_{draw.getrandbits(64):016x}{'é' * (i % 3)}"
            assert partition_of(key, n) == partitioner(key.encode(), everyone, everyone)


def test_tags_name_the_partition_and_untagged_names_none() -> None:
    tags = Tags(12)
    assert tags.of("cus_a") == f"{{p{partition_of('cus_a', 12)}}}:"
    assert hash_tag(f"sb:{tags.of('cus_a')}history:cus_a") == f"p{partition_of('cus_a', 12)}"
    assert UNTAGGED.of("cus_a") == ""
    assert tags.every() == [f"{{p{p}}}:" for p in range(12)]
    assert UNTAGGED.every() == [""]
    assert hash_tag("sb:history:cus_a") == "" and hash_tag("sb:{}:x") == ""


def test_remembered_tags_stay_right_past_what_is_remembered(monkeypatch: Any) -> None:
    monkeypatch.setattr("processors.stores.tags._REMEMBERED", 8)
    tags, other = Tags(12), Tags(5)
    ids = [f"cus_{i}" for i in range(40)]
    for _ in range(2):  # the second round reads what the first remembered, or forgot
        assert [tags.of(i) for i in ids] == [f"{{p{partition_of(i, 12)}}}:" for i in ids]
        assert [other.of(i) for i in ids] == [f"{{p{partition_of(i, 5)}}}:" for i in ids]
    assert tags == Tags(12) and hash(tags) == hash(Tags(12))  # what it remembers is not its value


class _Pipe:
    """A pipeline stand-in that answers each queued call with what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def eval(self, *args: Any) -> None:
        self.calls.append(("eval", args))

    def hgetall(self, key: str) -> None:
        self.calls.append(("hgetall", (key,)))

    async def execute(self) -> list[Any]:
        answers: list[Any] = []
        for name, args in self.calls:
            if name == "eval" and args[0] == "read":
                answers.append([f"v:{k}" for k in args[2:2 + args[1]]])
            else:
                answers.append(len(args))
        return answers


async def test_a_batch_splits_calls_per_tag_and_answers_one_merged_result_each() -> None:
    pipe = _Pipe()
    batch = Batch(pipe)
    keys = ["a:{p1}:x", "a:{p2}:y", "a:{p1}:z", "a:w", "a:v"]
    batch.hgetall("a:backlog")
    split(batch, keys, lambda p, part: p.eval("read", len(part), *(keys[i] for i in part)))
    split(batch, keys, lambda p, part: p.eval("write", len(part)))
    assert len(batch) == 3
    # p1, p2 and the untagged keys together: three calls for five keys
    assert [c[1][2:] for c in pipe.calls[1:4]] == [("a:{p1}:x", "a:{p1}:z"), ("a:{p2}:y",), ("a:w", "a:v")]
    backlog, read, written = await batch.execute()
    assert backlog == 1
    assert read == [f"v:{k}" for k in keys]
    assert written == 2 + 2 + 2


async def test_a_plain_pipeline_gets_one_call_and_an_empty_split_none() -> None:
    pipe = _Pipe()
    keys = ["a:{p1}:x", "a:{p2}:y"]
    split(pipe, keys, lambda p, part: p.eval("read", len(part), *(keys[i] for i in part)))
    assert len(pipe.calls) == 1
    batch = Batch(_Pipe())
    split(batch, [], lambda p, part: p.eval("read", 0))
    assert await batch.execute() == [[]]
