"""What Faust itself costs: one Faust agent that forwards each record and does nothing else.

Same shape as the pipeline's agents (a batch from `take_events`, every output awaited
before the batch is acknowledged), so pipeline ÷ this is Switchboard's own share and
this ÷ the raw aiokafka pipe is Faust's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
from typing import Any

import faust

__all__ = ["forwarder"]


def forwarder(bootstrap: str, source: str, sink: str, group: str, partitions: int, *,
              datadir: str) -> faust.App:
    """A Faust app whose one agent copies `source` to `sink`."""
    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    datadir=datadir,
                    autodiscover=False, key_serializer="raw", value_serializer="raw",
                    topic_partitions=partitions, consumer_auto_offset_reset="earliest",
                    producer_acks=-1, broker_commit_every=500)
    topic = app.topic(source, key_type=bytes, value_type=bytes)

    async def forward(stream: Any) -> None:
        async for events in stream.take_events(500, within=0.005):
            pending = [await app.producer.send(sink, e.message.key, e.message.value, None, None, None)
                       for e in events]
            await asyncio.gather(*pending)

    app.agent(topic, name="forward")(forward)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("bootstrap", "source", "sink", "group"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    # Faust keeps a data directory even with tables in memory: a temporary one, not litter in cwd
    with tempfile.TemporaryDirectory(prefix="sb-faustpipe-") as datadir:
        app = forwarder(args.bootstrap, args.source, args.sink, args.group, args.partitions,
                        datadir=datadir)
        sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
        gc.freeze()  # as the workers do (router/service.py)
        app.main()
