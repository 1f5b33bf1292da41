"""The one codec for every event on a topic: msgspec JSON, typed on both ends."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from schemas.errors import ParseError

__all__ = ["decode", "decoder", "encode"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def encode(event: msgspec.Struct) -> bytes:
    """Serialise an event to JSON bytes."""
    return _encoder.encode(event)


def decoder(model: type[T]) -> msgspec.json.Decoder[T]:
    """The cached decoder for one event type."""
    found = _decoders.get(model)
    if found is None:
        found = _decoders[model] = msgspec.json.Decoder(model)
    return found


def decode(data: bytes, model: type[T]) -> T:
    """Parse and validate JSON bytes as `model`, raising ParseError with the reason."""
    try:
        return decoder(model).decode(data)
    except msgspec.DecodeError as e:
        raise ParseError(f"not a valid {model.__name__}: {e}") from e
