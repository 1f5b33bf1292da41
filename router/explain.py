"""`switchboard explain`: what the pipeline would decide for messages, without Kafka or Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from connectors.registry import get
from processors import thread
from processors.identify import customer_id_for
from processors.intake import routed_conversation
from processors.route import DefaultPolicy
from schemas.errors import SwitchboardError

__all__ = ["explain_one", "explain_paths"]

_DEDUPE_NOTE = "not checked: explain consults no Redis"


def explain_one(channel: str, raw: bytes, rules: thread.ThreadRules) -> dict[str, Any]:
    """The normalised message and every stage's decision for one raw payload."""
    parse = get(channel).parse
    if parse is None:
        raise SwitchboardError(f"channel {channel!r} has no parser to explain with")
    message = parse(raw)
    threaded = thread.decide(message, thread.ThreadContext(), rules)
    if not threaded.joined:
        # without Redis only the self-proving signals (our tokens) can be seen
        note = "; Redis not consulted, so known threads and recent conversations are not checked"
        threaded = thread.ThreadDecision(threaded.conversation_id, False, msgspec.structs.replace(
            threaded.decision, reasons=(threaded.decision.reasons[0] + note,)))
    routed = routed_conversation(message, customer_id_for(message.sender), threaded,
                                 DefaultPolicy(), _DEDUPE_NOTE)
    doc: dict[str, Any] = msgspec.to_builtins(routed)
    return {"message": doc.pop("message"), "decision": doc}


def explain_paths(channel: str, paths: list[str], read_stdin: Any,
                  rules: thread.ThreadRules) -> Iterator[dict[str, Any]]:
    """One result per path, in order: the explanation, or the file and why it was refused."""
    for path in paths:
        try:
            raw = read_stdin() if path == "-" else Path(path).read_bytes()
            yield {"file": path, **explain_one(channel, raw, rules)}
        except SwitchboardError as e:
            yield {"file": path, "error": e.reason}
        except OSError as e:
            yield {"file": path, "error": f"cannot read: {e.strerror or e}"}


def render(result: dict[str, Any], *, pretty: bool) -> str:
    """JSON text of one result: indented for one file, one line each for many."""
    return json.dumps(result, indent=2 if pretty else None, ensure_ascii=False, default=str)
