"""The limit of this stack: an aiokafka consume→produce pipe that does no processing.

Same delivery guarantee as the pipeline: each batch's outputs are acknowledged by Kafka
before the batch's offsets are committed. And the same commit as the stages' loop
(router/loop.py): it runs beside the next batch, not between two. Committed in line, a
commit's round trip (~15 ms here) sat in every message's latency, so the ceiling the
chain is held to was lower than this stack's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

__all__ = ["pipe"]


async def pipe(bootstrap: str, source: str, sink: str, group: str, stop: asyncio.Event) -> None:
    """Copy every record from `source` to `sink` until `stop` is set."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    # offsets whose outputs Kafka has acknowledged, not committed yet
    done: dict[TopicPartition, int] = {}
    committing: asyncio.Task[None] | None = None

    async def commit_while_new() -> None:
        while done:
            offsets = dict(done)
            done.clear()
            await consumer.commit(offsets)

    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=5, max_records=500)
            if not batches:
                continue
            pending = []
            for records in batches.values():
                for r in records:
                    pending.append(await producer.send(sink, r.value, key=r.key))
            await asyncio.gather(*pending)
            done.update({tp: records[-1].offset + 1 for tp, records in batches.items()})
            if committing is None or committing.done():
                if committing is not None:
                    committing.result()  # a failed commit stops the pipe, as one made in line did
                committing = asyncio.create_task(commit_while_new())
        if committing is not None:
            await committing  # it commits whatever was done before the stop
    finally:
        await consumer.stop()
        await producer.stop()


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await pipe(args.bootstrap, args.source, args.sink, args.group, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("bootstrap", "source", "sink", "group"):
        parser.add_argument(f"--{name}", required=True)
    # as the workers do (router/service.py): the start-up heap out of the collector's sight
    gc.freeze()
    asyncio.run(_main(parser.parse_args()))
