"""Conversation cards in Redis: what agents' tools and the replies API need to answer.

One hash per conversation, `<ns>:{p<N>}:card:<conversation id>` (tagged by the
conversation id's partition, processors.stores.tags), with one writer per field so
stages never overwrite each other's work without a lock:
- `card`        the ConversationCard JSON, written by the dispatch stage from routed messages;
- `status`      open / waiting_on_customer / resolved / closed, written by the brain;
- `dest:<name>` the thread reference an agents' tool gave the conversation (a Slack ts).
A read merges the three. Reads and writes of a batch are one command each (per tag).

The way back from a tool's thread to its conversation is a plain key,
`<ns>:{p<N>}:tool-thread:<destination>:<thread reference>` → conversation id, written by
the dispatch stage beside `dest:<name>` (a Slack reply names only its channel and thread
ts). Its reader knows only the thread, so it is tagged by `<destination>:<reference>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from msgspec.structs import replace
from redis.asyncio import Redis

from processors.stores.bulk import queue_hset_many, queue_read_each
from processors.stores.tags import UNTAGGED, Tags
from schemas.conversation import ConversationCard, Status

__all__ = ["CardStore", "card_fields", "status_fields", "thread_fields"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ConversationCard)
_STATUSES = frozenset({"open", "waiting_on_customer", "resolved", "closed"})


class CardStore:
    """Keys `<ns>:card:<conversation id>` (hash), kept `ttl_seconds` after the last write."""

    def __init__(self, namespace: str, ttl_seconds: int, tags: Tags = UNTAGGED) -> None:
        self._namespace = namespace
        self._tags = tags
        self._ttl = ttl_seconds

    @property
    def tags(self) -> Tags:
        """How the keys are tagged: the stages that work beside the cards tag theirs alike."""
        return self._tags

    @property
    def ttl_seconds(self) -> int:
        """How long a card is kept after its last write (0: for ever)."""
        return self._ttl

    def key(self, conversation_id: str) -> str:
        """The hash of one conversation's card."""
        return f"{self._namespace}:{self._tags.of(conversation_id)}card:{conversation_id}"

    def tool_thread_key(self, destination: str, reference: str) -> str:
        """The key holding which conversation a tool's thread belongs to."""
        thread = f"{destination}:{reference}"
        return f"{self._namespace}:{self._tags.of(thread)}tool-thread:{thread}"

    async def conversation_of(self, redis: Redis, destination: str, reference: str) -> str | None:
        """The conversation a tool's thread belongs to, or None."""
        value = await redis.get(self.tool_thread_key(destination, reference))
        return value.decode() if isinstance(value, bytes) else value

    def queue_read(self, pipe: Any, conversation_ids: Sequence[str]) -> None:
        """Queue the read of every card: one command for the batch."""
        queue_read_each(pipe, [self.key(c) for c in conversation_ids], "HGETALL")

    def parse_read(self, answer: Sequence[Any]) -> list[ConversationCard | None]:
        """Each card in the order asked, with its status and thread references; None if unknown."""
        return [_merge(dict(zip(flat[::2], flat[1::2], strict=True))) for flat in answer]

    def queue_write(self, pipe: Any, changes: Mapping[str, Mapping[str, str | bytes]]) -> None:
        """Queue field writes (conversation id → field → value) as one command, if any."""
        if not changes:
            return
        queue_hset_many(pipe, {self.key(c): fields for c, fields in changes.items()}, self._ttl)

    async def get(self, redis: Redis, conversation_id: str) -> ConversationCard | None:
        """One card, for the HTTP API."""
        pipe = redis.pipeline(transaction=False)
        self.queue_read(pipe, [conversation_id])
        [answer] = await pipe.execute()
        return self.parse_read(answer)[0]


def card_fields(card: ConversationCard) -> dict[str, str | bytes]:
    """The dispatch stage's fields of a card (status and thread references are others')."""
    return {"card": _encoder.encode(card)}


def status_fields(status: Status) -> dict[str, str | bytes]:
    """The brain's field of a card."""
    return {"status": status}


def thread_fields(threads: Mapping[str, str]) -> dict[str, str | bytes]:
    """The thread references agents' tools gave the conversation, by destination."""
    return {f"dest:{name}": ref for name, ref in threads.items()}


def _merge(fields: dict[bytes, bytes]) -> ConversationCard | None:
    raw = fields.get(b"card")
    if raw is None:
        return None
    card = _decoder.decode(raw)
    status = fields.get(b"status", b"").decode()
    threads = {k[5:].decode(): v.decode() for k, v in fields.items() if k.startswith(b"dest:")}
    return replace(card, status=status if status in _STATUSES else card.status,
                   destinations={**card.destinations, **threads})
