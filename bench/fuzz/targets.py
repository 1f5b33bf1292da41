"""Every parser of outside input the fuzzer drives, each with the exceptions its contract allows.

A target takes raw bytes as they arrive from outside. Where one call needs several
values (a signature check's headers and body) they come in one input, separated by
line feeds, so a saved input stays readable. An event a parser returns must also
survive the topic codec (encode, decode, equal): one that cannot would stop a consumer.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

import connectors.email
from bench.fuzz import seeds
from bench.fuzz.contract import Target
from connectors.api.parse import parse as parse_api
from connectors.registry import sections
from connectors.slack import errors as slack_errors
from connectors.slack import events as slack_events
from connectors.twitter import errors as x_errors
from connectors.twitter import sign as x_sign
from connectors.twitter.parse import parse_envelope as parse_x_activity
from connectors.webhook import errors as webhook_errors
from connectors.webhook.sign import verify as verify_webhook
from processors.policy.load import parse_policy
from processors.stores.directory import parse_directory_csv
from router.http.integrations import Integrations
from router.settings import load as load_settings
from router.vocabulary import VOCABULARY
from schemas.codec import decode, encode
from schemas.errors import ConfigError, ParseError
from schemas.inbound import InboundMessage
from schemas.topics import ALL

__all__ = ["TARGETS", "RoundTripError"]

_TIERS = frozenset({"standard", "premium"})
_TOKENS = Integrations([], [SecretStr(seeds.TOKEN)])


class RoundTripError(Exception):
    """An event did not come back unchanged from the topic codec."""


def _round_trip(event: Any, model: type[Any]) -> None:
    """Encode an event and decode it again: it must be what it was."""
    try:
        again = decode(encode(event), model)
    except ParseError as e:
        raise RoundTripError(f"its own encoding does not decode: {e.reason}") from e
    if again != event:
        raise RoundTripError(f"{model.__name__} changed on the way through the codec")


def _split(data: bytes, parts: int) -> list[bytes | None]:
    """The first `parts - 1` lines and the rest; None for what is missing."""
    found: list[bytes | None] = [*data.split(b"\n", parts - 1)]
    return found + [None] * (parts - len(found))


def _header(raw: bytes | None) -> str | None:
    """A header value as aiohttp hands it over: UTF-8, undecodable bytes as surrogates."""
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


def _email(data: bytes) -> None:
    _round_trip(connectors.email.parse(data), InboundMessage)


def _api(data: bytes) -> None:
    _round_trip(parse_api(data), InboundMessage)


def _slack_events(data: bytes) -> None:
    slack_events.parse(data)


def _slack_verify(data: bytes) -> None:
    timestamp, signed, body = _split(data, 3)
    slack_events.verify(seeds.SECRET, body or b"", timestamp=_header(timestamp), signed=_header(signed),
                        now=seeds.NOW)


def _webhook_verify(data: bytes) -> None:
    header, body = _split(data, 2)
    verify_webhook(seeds.SECRET, _header(header) or "", body or b"", seeds.NOW)


def _x_activity(data: bytes) -> None:
    found = parse_x_activity(data, "783214")
    if isinstance(found, InboundMessage):
        _round_trip(found, InboundMessage)


def _x_verify(data: bytes) -> None:
    header, body = _split(data, 2)
    x_sign.verify(seeds.SECRET, body or b"", _header(header))


def _bearer_token(data: bytes) -> None:
    _TOKENS.caller({"Authorization": _header(data) or ""})


def _policy(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_policy refuses the file before parsing
    parse_policy(text, "fuzz.yaml", VOCABULARY)


def _settings(data: bytes) -> None:
    try:
        value = json.loads(data)
    except ValueError:
        return  # not JSON: there are no sections to build settings from
    given = value if isinstance(value, dict) else dict.fromkeys(sections(), value)
    load_settings(sections=given)


def _codec(data: bytes) -> None:
    for spec in ALL:
        try:
            event: Any = decode(data, spec.model)
        except ParseError:
            continue
        _round_trip(event, spec.model)


def _directory_csv(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # the import route answers 400 before parsing
    parse_directory_csv(text, _TIERS)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("email", _email, (ParseError,), seeds.email, ".eml", max_len=16_384),
    Target("api", _api, (ParseError,), seeds.api, ".json"),
    Target("slack_events", _slack_events, (ParseError,), seeds.slack_events_bodies, ".json"),
    Target("slack_verify", _slack_verify, (slack_errors.SignatureError,), seeds.slack_verify, ".txt"),
    Target("webhook_verify", _webhook_verify, (webhook_errors.SignatureError,), seeds.webhook_verify,
           ".txt"),
    Target("x_activity", _x_activity, (ParseError,), seeds.x_activity, ".json"),
    Target("x_verify", _x_verify, (x_errors.SignatureError,), seeds.x_verify, ".txt"),
    Target("bearer_token", _bearer_token, (), seeds.bearer_token, ".txt", max_len=512),
    Target("policy", _policy, (ConfigError,), seeds.policy, ".yaml", max_len=16_384),
    Target("settings", _settings, (ConfigError,), seeds.settings, ".json"),
    Target("codec", _codec, (ParseError,), seeds.codec, ".json"),
    Target("directory_csv", _directory_csv, (ConfigError,), seeds.directory_csv, ".csv"),
)}
