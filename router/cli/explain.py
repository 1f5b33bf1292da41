"""`switchboard explain`: every stage's decision for messages, without Kafka or Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from connectors.registry import channel as channel_spec
from processors.brain import route, thread
from processors.intake import identify
from processors.intake.stage import identified_message
from processors.policy.model import Policy
from schemas.errors import SwitchboardError
from schemas.identified import CustomerProfile

__all__ = ["explain_one", "explain_paths", "render"]

_DEDUPE_NOTE = "not checked: explain consults no Redis"


def explain_one(channel: str, raw: bytes, rules: thread.ThreadRules, policy: Policy) -> dict[str, Any]:
    """The normalised message and every stage's decision, as for a customer never seen before."""
    parse = channel_spec(channel).parse
    if parse is None:
        raise SwitchboardError(f"channel {channel!r} has no parser to explain with")
    message = parse(raw)
    customer, identified = identify.decide(identify.Sighting.of(message), None)
    facts = route.Facts(profile=CustomerProfile(customer_id=customer))
    now = datetime.now(UTC)
    outcome = route.decide(identified_message(message, customer, _DEDUPE_NOTE, identified, at=now), facts,
                           policy, rules, now)
    doc: dict[str, Any] = msgspec.to_builtins(outcome.routed)
    result = {"message": doc.pop("message"), "decision": doc}
    if outcome.ack is not None:
        result["acknowledgement"] = {"text": outcome.ack.text, "expected": outcome.ack.expected}
    return result


def explain_paths(channel: str, paths: list[str], read_stdin: Any, rules: thread.ThreadRules,
                  policy: Policy) -> Iterator[dict[str, Any]]:
    """One result per path, in order: the explanation, or the file and why it was refused."""
    for path in paths:
        try:
            raw = read_stdin() if path == "-" else Path(path).read_bytes()
            yield {"file": path, **explain_one(channel, raw, rules, policy)}
        except SwitchboardError as e:
            yield {"file": path, "error": e.reason}
        except OSError as e:
            yield {"file": path, "error": f"cannot read: {e.strerror or e}"}


def render(result: dict[str, Any], *, pretty: bool) -> str:
    """JSON text of one result: indented for one file, one line each for many."""
    return json.dumps(result, indent=2 if pretty else None, ensure_ascii=False, default=str)
