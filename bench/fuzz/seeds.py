"""Where each fuzz target starts: the recorded fixtures, and small hand-written payloads.

The fuzzer mutates these; a seed that reaches deep into a parser (a valid policy, a
correctly signed request) lets the mutations explore what lies behind the first check.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from connectors.slack import events as slack_events
from connectors.twitter import sign as x_sign
from connectors.webhook.sign import sign
from schemas.errors import ParseError

__all__ = [
    "NOW",
    "SECRET",
    "api",
    "bearer_token",
    "codec",
    "directory_csv",
    "email",
    "policy",
    "settings",
    "slack_events_bodies",
    "slack_verify",
    "webhook_verify",
]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# the signing secret and clock every signature target uses, so seeds can be signed right
SECRET = b"fuzz-signing-secret"
NOW = 1_772_366_400.0
# the API token the bearer-token target accepts
TOKEN = "fuzz-api-token"
_AT = "2026-03-01T12:00:00Z"


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def email() -> list[bytes]:
    """Every recorded mail, the ugly ones included."""
    return [p.read_bytes() for p in sorted((FIXTURES / "email").glob("*.eml"))]


def bearer_token() -> list[bytes]:
    """`Authorization` header values: the right token, another, other schemes, none."""
    return [f"Bearer {TOKEN}".encode(), b"bearer  other-token ", b"Basic YWRhOnB3", b"Bearer", b""]


def policy() -> list[bytes]:
    """The example policy and every policy fixture (each breaks the minimal one in one place)."""
    paths = [ROOT / "deploy" / "policy.example.yaml", *sorted((FIXTURES / "policy").glob("*.yaml"))]
    return [p.read_bytes() for p in paths]


def api() -> list[bytes]:
    """`POST /v1/messages` bodies: minimal, complete, and a few refusals."""
    return [_dumps(body) for body in (
        {"sender": "ada@example.com", "text": "My order never arrived"},
        {"sender": "+14155550100", "text": "hi", "subject": "Order 1234", "thread_id": "t-1",
         "message_id": "m-1", "metadata": {"order": "1234"}},
        {"sender": "@ada_l", "text": "where is it?", "metadata": {}},
        {"sender": "ada", "text": ""},
        {"sender": "ada@example.com", "text": "x", "unknown": 1},
    )]


def slack_events_bodies() -> list[bytes]:
    """Events API bodies: the challenge, a reply, a note, and what is ignored."""
    def message(**fields: object) -> dict[str, object]:
        return {"type": "message", "channel": "C0SUPPORT", "user": "U1", "ts": "1772366001.000200",
                "thread_ts": "1772366000.000100", "text": "We shipped it <https://x.example/t|here>",
                **fields}

    envelopes: list[dict[str, object]] = [
        {"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"},
        {"type": "event_callback", "event_id": "Ev1", "event": message()},
        {"type": "event_callback", "event_id": "Ev2", "event": message(text="note: <@U2|ana> check this")},
        {"type": "event_callback", "event_id": "Ev3", "event": message(bot_id="B1")},
        {"type": "event_callback", "event_id": "Ev4", "event": message(subtype="message_changed")},
        {"type": "event_callback", "event_id": "Ev5", "event": {"type": "reaction_added"}},
        {"type": "app_rate_limited"},
    ]
    return [_dumps(e) for e in envelopes]


def slack_verify() -> list[bytes]:
    """`timestamp LF signature LF body`: correctly signed bodies, a stale one, a wrong one."""
    fresh = str(int(NOW))
    out = []
    for body in slack_events_bodies()[:3]:
        out.append(b"\n".join([fresh.encode(), slack_events.signature(SECRET, fresh, body).encode(), body]))
    stale = str(int(NOW) - 3600)
    out.append(b"\n".join([stale.encode(), slack_events.signature(SECRET, stale, b"{}").encode(), b"{}"]))
    out.append(b"\n".join([fresh.encode(), b"v0=00", b"{}"]))
    return out


def webhook_verify() -> list[bytes]:
    """`header LF body`: correctly signed, two digests (a rotation), stale, malformed."""
    body = b'{"event":"conversation.routed"}'
    good = sign(SECRET, body, NOW)
    return [
        f"{good}\n".encode() + body,
        f"{good},v1=deadbeef\n".encode() + body,
        sign(SECRET, body, NOW - 3600).encode() + b"\n" + body,
        b"t=abc,v1=00\n" + body,
        b"\n",
    ]


def x_activity() -> list[bytes]:
    """X Activity API deliveries: every recorded shape, mentions, DMs, errors, encrypted."""
    return [path.read_bytes() for path in sorted((FIXTURES / "x" / "activity").glob("*.json"))]


def x_verify() -> list[bytes]:
    """`signature LF body`: correctly signed, another secret's, malformed, missing."""
    body = (FIXTURES / "x" / "activity" / "mention.json").read_bytes()
    return [x_sign.signature(SECRET, body).encode() + b"\n" + body,
            x_sign.signature(b"other", body).encode() + b"\n" + body,
            b"sha256=abc\n" + body, b"\n"]


def settings() -> list[bytes]:
    """Connector sections as JSON: empty, a full email account, Slack, a webhook."""
    sections: list[dict[str, object]] = [
        {},
        {"email": {"accounts": [{"name": "support", "host": "imap.example.com", "username": "support",
                                 "password": "pw", "tls": "starttls", "port": 143}],
                   "smtp": {"host": "smtp.example.com", "from_address": "help@example.com",
                            "message_id_domain": "mail.example.com"}}},
        {"slack": {"bot_token": "xoxb-1", "signing_secret": "s", "base_url": "http://127.0.0.1:1/api"}},
        {"webhook": {"timeout_seconds": 5}, "api": {}},
    ]
    return [_dumps(s) for s in sections]


def directory_csv() -> list[bytes]:
    """Customer directory imports: a good one, quoted cells across lines, bad rows."""
    return [
        b"identity,tier,name\nada@example.com,premium,Ada Lovelace\n+14155550100,standard,\n",
        b'\xef\xbb\xbfidentity,name\n@ada_l,"Ada\nL."\n\n',
        b"identity,tier\nnot-an-identity,premium\n",
        b"identity,tier,tier\n",
        b'identity,name\n"unterminated\n',
    ]


def codec() -> list[bytes]:
    """One event of every topic: parsed inbound messages and hand-written minimal events."""
    from connectors.api.parse import parse as parse_api
    from connectors.email import parse as parse_email
    from schemas.codec import encode

    inbound = [encode(parse_api(body)) for body in api()[:2]]
    for raw in email():
        with contextlib.suppress(ParseError):  # a refused mail makes no event
            inbound.append(encode(parse_email(raw)))
    message = json.loads(inbound[0])
    identity = {"kind": "email", "value": "ada@example.com"}
    events: list[dict[str, object]] = [
        {"event_id": "ev_1", "customer_id": "cus_1", "message": message, "identified_at": _AT,
         "decisions": [{"stage": "identify", "outcome": "new", "reasons": ["first sight"]}]},
        {"event_id": "ev_1", "conversation_id": "con_1", "customer_id": "cus_1", "queue": "general",
         "priority": 2, "tier": "standard", "urgency": "high", "first_response_due": _AT,
         "routed_at": _AT, "message": message, "sentiment": -0.7,
         "decisions": [{"stage": "route", "outcome": "general", "reasons": ["tier=standard"]}],
         "history": [{"at": _AT, "channel": "email", "conversation_id": "con_0", "direction": "in",
                      "summary": "hello"}]},
        {"action": "link", "identity": identity, "customer_id": "cus_1", "previous_customer_id": None,
         "evidence": "same order", "actor": "ana", "at": _AT},
        {"event_id": "sla_1", "kind": "warn", "conversation_id": "con_1", "customer_id": "cus_1",
         "target": "first_response", "due_at": _AT, "at": _AT, "reasons": ["80%"], "step": 1},
        {"event_id": "le_1", "conversation_id": "con_1", "customer_id": "cus_1", "kind": "note",
         "at": _AT, "author": "ana", "text": "called them"},
        {"reply_id": "rep_1", "conversation_id": "con_1", "channel": "email", "recipient": identity,
         "kind": "agent_reply", "text": "Shipped today.", "created_at": _AT, "references": ["<a@b>"]},
        {"reply_id": "rep_1", "conversation_id": "con_1", "channel": "email", "status": "held", "at": _AT,
         "flags": [{"rule": "blame", "action": "hold", "matched": ["your fault"], "reason": "blame"}]},
        {"delivery_id": "dlv_1", "conversation_id": "con_1", "event_id": "ev_1", "destination": "helpdesk",
         "intended": "helpdesk", "status": "delivered", "attempts": 1, "at": _AT},
        {"stage": "intake", "reason": "not JSON", "original": "eyJ4Ig==", "at": _AT, "source_offset": 3},
    ]
    return [*inbound, *(_dumps(e) for e in events)]
