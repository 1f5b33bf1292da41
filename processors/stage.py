"""What every stage shares: the records it reads, the outputs it produces, its dead letters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

import msgspec

from processors.metrics import DEADLETTERED
from schemas.codec import decoder, encode
from schemas.deadletter import DeadLetter
from schemas.errors import ParseError
from schemas.topics import DEADLETTER, TopicSpec

__all__ = ["Output", "Record", "dead_letter", "decode_records"]

log = logging.getLogger(__name__)
T = TypeVar("T")


# Records, outputs and claims are structs, not dataclasses: a frozen dataclass sets each
# field through object.__setattr__, and a worker makes several of each a message (2.5 µs
# a record against 0.9)
class Record(msgspec.Struct, frozen=True):
    """One Kafka record as a stage sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    # where the record sits, `topic/partition/offset`: what a claim names as its owner (named
    # once, from the other fields: a stage asks for it several times a record)
    owner: str = ""

    def __post_init__(self) -> None:
        """Name the record's place once."""
        msgspec.structs.force_setattr(self, "owner", f"{self.topic}/{self.partition}/{self.offset}")


class Output(msgspec.Struct, frozen=True):
    """One record to produce: which topic, its key and value."""

    topic: TopicSpec
    key: bytes
    value: bytes


def dead_letter(record: Record, reason: str, channel: str | None = None, stage: str = "intake") -> Output:
    """A dead letter keeping the record's original bytes and where they came from."""
    letter = DeadLetter(
        stage=stage, reason=reason, original=record.value or b"", at=datetime.now(UTC),
        channel=channel, source_topic=record.topic, source_partition=record.partition,
        source_offset=record.offset,
    )
    return Output(DEADLETTER, stage.encode(), encode(letter))


def decode_records(records: Sequence[Record], model: type[T], stage: str,
                   outputs: list[Output]) -> list[tuple[Record, T]]:
    """Decode a batch; a record that is not a valid `model` goes to the dead letters, the rest flow."""
    decode = decoder(model).decode
    decoded = []
    for record in records:
        try:
            if record.value is None:
                raise ParseError("record has no value")
            decoded.append((record, decode(record.value)))
        except Exception as e:  # noqa: BLE001 - any decode failure is this record's fault
            reason = e.reason if isinstance(e, ParseError) else f"not a valid {model.__name__}: {e}"
            outputs.append(dead_letter(record, reason, stage=stage))
            DEADLETTERED.labels(stage, "unknown").inc()
            log.warning("dead-lettered record", extra={
                "stage": stage, "source": record.owner, "reason": reason})
    return decoded
