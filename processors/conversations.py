"""Conversation state in Redis: channel threads and each customer's latest conversation.

Reads join the batch's claim round trip; writes are one pipeline per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from processors.thread import OpenConversation, ThreadContext
from schemas.inbound import InboundMessage

__all__ = ["ConversationStore", "Update"]

_open_decoder = msgspec.json.Decoder(OpenConversation)
_encoder = msgspec.json.Encoder()
READS_PER_MESSAGE = 2


class Update(msgspec.Struct, frozen=True):
    """What one routed message changes: its thread's conversation, the customer's latest."""

    channel: str
    thread_key: str
    customer_id: str
    open: OpenConversation


class ConversationStore:
    """Keys `<ns>:thread:<channel>:<thread key>` and `<ns>:open:<customer id>`."""

    def __init__(self, namespace: str, ttl_seconds: int) -> None:
        self._ns = namespace
        self._ttl = ttl_seconds

    def _thread_key(self, channel: str, thread_key: str) -> str:
        return f"{self._ns}:thread:{channel}:{thread_key}"

    def _open_key(self, customer_id: str) -> str:
        return f"{self._ns}:open:{customer_id}"

    def queue_reads(self, pipe: Any, items: Sequence[tuple[InboundMessage, str]]) -> None:
        """Add the reads for (message, customer id) pairs to a pipeline."""
        for message, customer_id in items:
            pipe.get(self._thread_key(message.channel, message.thread_key))
            pipe.get(self._open_key(customer_id))

    def contexts(self, results: Sequence[Any]) -> list[ThreadContext]:
        """Turn the pipeline's answers to `queue_reads` back into contexts, in order."""
        out = []
        for i in range(0, len(results), READS_PER_MESSAGE):
            thread, open_ = results[i], results[i + 1]
            out.append(ThreadContext(
                known_thread=thread.decode() if thread else None,
                open=_open_decoder.decode(open_) if open_ else None,
            ))
        return out

    def queue_writes(self, pipe: Any, updates: Sequence[Update]) -> None:
        """Add one batch's updates to a pipeline; the last update of a key wins."""
        for u in updates:
            pipe.set(self._thread_key(u.channel, u.thread_key), u.open.conversation_id, ex=self._ttl)
            pipe.set(self._open_key(u.customer_id), _encoder.encode(u.open), ex=self._ttl)
