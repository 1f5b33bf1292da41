"""`switchboard redis retag`: move Redis keys to the tags of a partition count (decision 0021)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from processors.stores.retag import retag
from processors.stores.tags import Tags
from router.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add `redis retag` to the command line."""
    redis = sub.add_parser("redis", help="maintain Switchboard's keys in Redis")
    actions = redis.add_subparsers(dest="redis_command", required=True, metavar="ACTION")
    retag_ = actions.add_parser(
        "retag", help="move the keys to the hash tags of a partition count; run with the workers stopped",
        description="Needed once when upgrading from untagged keys, and after every change of "
        "SB_KAFKA_PARTITIONS (partitions only grow). Safe to run again; a conflict is reported, "
        "never overwritten.")
    retag_.add_argument("--partitions", type=int, metavar="N",
                        help="the partition count the workers will run with (default SB_KAFKA_PARTITIONS)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Retag, print what was done; non-zero when a conflict was left for an operator."""
    partitions = settings.kafka_partitions if args.partitions is None else args.partitions
    if partitions < 0:
        raise ValueError("--partitions must be 0 (untagged) or more")
    namespace = f"{settings.topic_prefix}sb"
    done = asyncio.run(_retag(settings, namespace, Tags(partitions)))
    print(f"{namespace}: {done.moved} keys moved, {done.due_moved} SLA due times moved, "
          f"{done.in_place} keys already in place, {done.conflicts} conflicts")
    if done.stranded:
        print(f"{done.stranded} dispatch ledgers from before the tags name no conversation and were left "
              "to expire: a record read again before they do is handed over again, with the same "
              "delivery id (decision 0021)")
    for key in done.conflicting or []:
        print(f"conflict: {key} and its new name both exist and differ; left as they are")
    return 1 if done.conflicts else 0


async def _retag(settings: Settings, namespace: str, tags: Tags) -> Any:
    redis = settings.new_redis(socket_timeout=30)
    try:
        return await retag(redis, namespace, tags)
    finally:
        await redis.aclose()
