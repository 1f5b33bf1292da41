"""Which conversation each channel thread is (an email thread root, an API thread id).

Reads are one MGET per batch and writes one command per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processors.stores.bulk import queue_mget, queue_set_many
from processors.stores.tags import UNTAGGED, Tags

__all__ = ["ConversationStore"]


class ConversationStore:
    """Keys `<ns>:{p<N>}:thread:<channel>:<thread key>` → conversation id."""

    def __init__(self, namespace: str, ttl_seconds: int, tags: Tags = UNTAGGED) -> None:
        self._ns = namespace
        self._ttl = ttl_seconds
        self._tags = tags

    def thread_key(self, channel: str, thread_key: str) -> str:
        """The key of a channel thread's conversation."""
        thread = f"{channel}:{thread_key}"
        return f"{self._ns}:{self._tags.of(thread)}thread:{thread}"

    def queue_read_threads(self, pipe: Any, threads: Sequence[tuple[str, str]]) -> None:
        """Add the reads of (channel, thread key) pairs to a pipeline, as one MGET."""
        queue_mget(pipe, [self.thread_key(c, t) for c, t in threads])

    def parse_threads(self, answer: Sequence[Any]) -> list[str | None]:
        """The conversation of each thread `queue_read_threads` asked for, or None."""
        return [v.decode() if v else None for v in answer]

    def queue_write_threads(self, pipe: Any, pairs: Sequence[tuple[str, str]]) -> None:
        """Add (thread key, conversation) writes to a pipeline as one command."""
        if pairs:
            queue_set_many(pipe, pairs, self._ttl)
