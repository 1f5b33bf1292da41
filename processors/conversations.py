"""Conversation state in Redis: channel threads and each customer's latest conversation.

Reads join the batch's claim round trip; writes are one pipeline per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from processors.bulk import queue_set_many
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
        """Add the reads for (message, customer id) pairs to a pipeline, as one MGET."""
        keys = []
        for message, customer_id in items:
            keys.append(self._thread_key(message.channel, message.thread_key))
            keys.append(self._open_key(customer_id))
        pipe.mget(keys)

    def contexts(self, answer: Sequence[Any]) -> list[ThreadContext]:
        """Turn the MGET's answer to `queue_reads` back into contexts, in order."""
        out = []
        for i in range(0, len(answer), READS_PER_MESSAGE):
            thread, open_ = answer[i], answer[i + 1]
            out.append(ThreadContext(
                known_thread=thread.decode() if thread else None,
                open=_open_decoder.decode(open_) if open_ else None,
            ))
        return out

    def queue_writes(self, pipe: Any, updates: Sequence[Update]) -> None:
        """Add one batch's updates to a pipeline as one command; the last update of a key wins."""
        pairs: dict[str, str | bytes] = {}
        for u in updates:
            pairs[self._thread_key(u.channel, u.thread_key)] = u.open.conversation_id
            pairs[self._open_key(u.customer_id)] = _encoder.encode(u.open)
        queue_set_many(pipe, list(pairs.items()), self._ttl)
