"""Identify: one customer for every identity, created on first sight, joined only on evidence.

Keys, under a namespace `<ns>`:
- `<ns>:{p<N>}:identity:<kind>:<value>`   the identity's `Binding` (JSON): customer, since, how;
- `<ns>:{p<N>}:identities:<customer id>`  set of the customer's identities (`kind:value`).

The hot path is one command per batch: a `SET <identity> <binding> NX GET` per message,
run as one Lua call, creates the binding on first sight and returns the one already there
otherwise. A new customer's id
is `customer_id_for(identity)` and the binding written for a message is the same on every
attempt, so a replay after a crash lands on the same customer and is still recognised as
the first sight, by its event id. The identity joins its customer's set in the batch's
write-back (`queue_register`), which is idempotent.

Links never come from guesswork: only from an explicit API call (`link`, `unlink`) or a
agent confirming what a customer stated in a private message: a statement alone is only a
suggestion (`IdentityStore.suggest`, fed by processors.evidence), never a link.
A link moves the identity, its history lines and conversations to the other customer in
one Lua script: atomic, and never starved by a busy customer's writes as WATCH would be.
Unlink gives the identity back its own deterministic customer. Each returns the
IdentityLink for `sb.identity.v1`: `customer_id` is where the identity belongs after the
change, `previous_customer_id` where it belonged before. A batch that looked an identity
up just before a link still writes that batch's history to the old customer, where it
stays visible; the link is published so consumers can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from processors.intake.binding import Binding
from schemas.errors import ParseError
from schemas.identity import Identity, IdentityKind, parse_sender
from schemas.ids import customer_id_for
from schemas.inbound import InboundMessage
from schemas.routed import Decision

__all__ = [
    "KNOWN",
    "LINKED",
    "MAX_EVIDENCE_CHARS",
    "NEW",
    "Binding",
    "Lookup",
    "Sighting",
    "customer_id_for",
    "decide",
    "identity_of",
    "parse_identity",
]

STAGE = "identify"
NEW, KNOWN, LINKED = "new", "known", "linked"
MAX_EVIDENCE_CHARS = 500
_QUOTE_CHARS = 80
_CHAT_SESSION_CHARS = 200
_KINDS: dict[str, IdentityKind] = {"email": "email", "phone": "phone", "x": "x", "xid": "xid",
                                   "chat": "chat"}
_X_USER_ID_DIGITS = 19




def parse_identity(raw: str) -> Identity:
    """Read `ada@example.com`, `+14155550100`, `@ada_x` or a `kind:value` such as `chat:s_81f`, `xid:12`."""
    text = raw.strip()
    kind, sep, value = text.partition(":")
    if not sep or kind not in _KINDS:
        return parse_sender(text)
    if kind == "chat":
        if not value or len(value) > _CHAT_SESSION_CHARS or any(c.isspace() for c in value):
            raise ParseError(f"chat session {value[:80]!r} is empty, too long or has spaces")
        return Identity(kind="chat", value=value)
    if kind == "xid":
        if not value.isascii() or not value.isdigit() or len(value) > _X_USER_ID_DIGITS:
            raise ParseError(f"{value[:80]!r} is not an X user id")
        return Identity(kind="xid", value=value)
    identity = parse_sender(f"@{value}" if kind == "x" and not value.startswith("@") else value)
    if identity.kind != kind:
        raise ParseError(f"{value[:80]!r} is not a valid {kind} identity")
    return identity


def identity_of(member: str) -> Identity:
    """The identity a stored `kind:value` names (as kept in the identity sets)."""
    kind, _, value = member.partition(":")
    return Identity(kind=_KINDS[kind], value=value)


Lookup = Binding | None


@dataclass(frozen=True, slots=True)
class Sighting:
    """A sender identity seen in one message, at the time the message arrived."""

    identity: Identity
    event_id: str
    at: datetime

    @classmethod
    def of(cls, message: InboundMessage) -> Sighting:
        """The sighting of a message's sender."""
        return cls(message.sender, message.event_id, message.received_at)

    def first_binding(self) -> Binding:
        """The binding a first sight creates; the same on every replay of the message."""
        return Binding(customer_id=customer_id_for(self.identity), since=self.at, event_id=self.event_id)


def _quote(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 1] + "…"


def decide(sighting: Sighting, lookup: Lookup) -> tuple[str, Decision]:
    """The customer of a sighting from what its key held before, with the reason."""
    who = sighting.identity
    if lookup is None or (lookup.how == "seen" and lookup.event_id == sighting.event_id):
        cid = customer_id_for(who)
        again = "" if lookup is None else " (re-read after a restart)"
        return cid, Decision(stage=STAGE, outcome=NEW, reasons=(f"customer {cid}: {who} first seen{again}",))
    # isoformat, not strftime: 0.7 µs against 5 on every known sender's message
    cid, day = lookup.customer_id, lookup.since.date().isoformat()
    if lookup.how in ("link", "stated"):
        via = f" from {lookup.via}" if lookup.via else ""
        reason = f"customer {cid}: {who} linked{via} by {lookup.actor} on {day}: '{_quote(lookup.evidence)}'"
        return cid, Decision(stage=STAGE, outcome=LINKED, reasons=(reason,))
    reason = f"customer {cid}: {who} known since {day}"
    if lookup.how == "unlink":
        reason += f", unlinked from {lookup.previous} by {lookup.actor}: '{_quote(lookup.evidence)}'"
    return cid, Decision(stage=STAGE, outcome=KNOWN, reasons=(reason,))
