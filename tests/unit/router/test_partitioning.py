"""Our stages build their own produce batches: each record must land where Kafka's client puts it."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from processors.stores.tags import key_partition


def test_a_key_lands_on_the_partition_kafkas_default_partitioner_gives_it() -> None:
    rng = random.Random(15)
    keys = [b"cus_" + rng.randbytes(rng.randrange(0, 40)).hex().encode() for _ in range(2_000)]
    keys += [b"", b"\x00", "kundé".encode(), b"con_" + b"9" * 200]
    for count in (1, 2, 3, 4, 7, 12, 64):
        partitions = list(range(count))
        for key in keys:
            assert key_partition(key, count) == DefaultPartitioner()(key, partitions, partitions)
