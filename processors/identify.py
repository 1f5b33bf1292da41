"""Identify: one customer for every identity, created on first sight, joined only on evidence.

Keys, under a namespace `<ns>`:
- `<ns>:identity:<kind>:<value>`   the identity's `Binding` (JSON): customer, since, how;
- `<ns>:identities:<customer id>`  set of the customer's identities (`kind:value`).

The hot path is one command per batch: a `SET <identity> <binding> NX GET` per message,
run as one Lua call, creates the binding on first sight and returns the one already there
otherwise. A new customer's id
is `customer_id_for(identity)` and the binding written for a message is the same on every
attempt, so a replay after a crash lands on the same customer and is still recognised as
the first sight, by its event id. The identity joins its customer's set in the batch's
write-back (`queue_register`), which is idempotent.

Links never come from guesswork: only from an explicit API call (`link`, `unlink`) or a
customer's own statement in a private message (`link_stated`, fed by processors.evidence).
A link moves the identity, its history lines and conversations to the other customer in
one Lua script: atomic, and never starved by a busy customer's writes as WATCH would be.
Unlink gives the identity back its own deterministic customer. Each returns the
IdentityLink for `sb.identity.v1`: `customer_id` is where the identity belongs after the
change, `previous_customer_id` where it belonged before. A batch that looked an identity
up just before a link still writes that batch's history to the old customer, where it
stays visible; the link is published so consumers can tell.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis

from processors.bulk import queue_claim_many
from processors.history import HistoryStore
from schemas.errors import ParseError, PermanentError, TransientError
from schemas.identified import IdentityLink
from schemas.identity import Identity, IdentityKind, parse_sender
from schemas.inbound import InboundMessage
from schemas.routed import Decision

__all__ = [
    "KNOWN",
    "LINKED",
    "MAX_EVIDENCE_CHARS",
    "NEW",
    "Binding",
    "IdentityStore",
    "LinkRefused",
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
_KINDS: dict[str, IdentityKind] = {"email": "email", "phone": "phone", "x": "x", "chat": "chat"}


def customer_id_for(identity: Identity) -> str:
    """The deterministic id of the customer an identity creates on first sight."""
    return "cus_" + hashlib.blake2b(str(identity).encode(), digest_size=10).hexdigest()


def parse_identity(raw: str) -> Identity:
    """Read `ada@example.com`, `+14155550100`, `@ada_x` or a `kind:value` such as `chat:s_81f`."""
    text = raw.strip()
    kind, sep, value = text.partition(":")
    if not sep or kind not in _KINDS:
        return parse_sender(text)
    if kind == "chat":
        if not value or len(value) > _CHAT_SESSION_CHARS or any(c.isspace() for c in value):
            raise ParseError(f"chat session {value[:80]!r} is empty, too long or has spaces")
        return Identity(kind="chat", value=value)
    identity = parse_sender(f"@{value}" if kind == "x" and not value.startswith("@") else value)
    if identity.kind != kind:
        raise ParseError(f"{value[:80]!r} is not a valid {kind} identity")
    return identity


def identity_of(member: str) -> Identity:
    """The identity a stored `kind:value` names (as kept in the identity sets)."""
    kind, _, value = member.partition(":")
    return Identity(kind=_KINDS[kind], value=value)


class Binding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What an identity's key holds: its customer, since when, and how it got there."""

    customer_id: str
    since: datetime
    how: Literal["seen", "import", "link", "stated", "unlink"] = "seen"
    # the message that first showed it, or the id of the link event that put it here
    event_id: str | None = None
    previous: str | None = None
    actor: str | None = None
    evidence: str | None = None
    # the identity whose message stated this one
    via: str | None = None


Lookup = Binding | None
# SADD KEYS[i] ARGV[i] for every key
_ADD_EACH = """
for i, key in ipairs(KEYS) do redis.call('SADD', key, ARGV[i]) end
return #KEYS
"""
# Moves one identity to another customer, atomically, if its binding is still the one the
# caller read (else "changed": read again). History lines are `[identity, entry]` members
# scored by time; conversation summaries are JSON with an "identity" field.
# KEYS: binding, then target identities/history/recent/profile, then (when the identity
# had a customer) source identities/history/recent.
# ARGV: binding read ("" for none), new binding, identity, history cap, "1" if the target must exist.
_MOVE = """
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return 'changed' end
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) == 0 then
  return 'unknown'
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if #KEYS == 5 then return 'ok' end
redis.call('SREM', KEYS[6], ARGV[3])
local lines = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
for i = 1, #lines, 2 do
  if cjson.decode(lines[i])[1] == ARGV[3] then
    redis.call('ZREM', KEYS[7], lines[i])
    redis.call('ZADD', KEYS[3], lines[i + 1], lines[i])
  end
end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[4]) - 1)
local recent = redis.call('HGETALL', KEYS[8])
for i = 1, #recent, 2 do
  if cjson.decode(recent[i + 1]).identity == ARGV[3] then
    redis.call('HDEL', KEYS[8], recent[i])
    redis.call('HSET', KEYS[4], recent[i], recent[i + 1])
  end
end
return 'ok'
"""
_encoder = msgspec.json.Encoder()
_binding = msgspec.json.Decoder(Binding)


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
    cid, day = lookup.customer_id, f"{lookup.since:%Y-%m-%d}"
    if lookup.how in ("link", "stated"):
        via = f" from {lookup.via}" if lookup.via else ""
        reason = f"customer {cid}: {who} linked{via} by {lookup.actor} on {day}: '{_quote(lookup.evidence)}'"
        return cid, Decision(stage=STAGE, outcome=LINKED, reasons=(reason,))
    reason = f"customer {cid}: {who} known since {day}"
    if lookup.how == "unlink":
        reason += f", unlinked from {lookup.previous} by {lookup.actor}: '{_quote(lookup.evidence)}'"
    return cid, Decision(stage=STAGE, outcome=KNOWN, reasons=(reason,))


def _event(identity: Identity, binding: Binding) -> IdentityLink:
    return IdentityLink(
        action="unlink" if binding.how == "unlink" else "link", identity=identity,
        customer_id=binding.customer_id, previous_customer_id=binding.previous,
        evidence=binding.evidence or "", actor=binding.actor or "", at=binding.since,
        event_id=binding.event_id)


class LinkRefused(PermanentError):
    """A link or unlink that cannot be made; `recorded` is the same change made before, if any."""

    def __init__(self, code: str, reason: str, recorded: IdentityLink | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.recorded = recorded


Bind = Callable[[Binding | None], Binding]


class IdentityStore:
    """Identity bindings and each customer's identity set; hot-path commands are only queued."""

    def __init__(self, namespace: str, history: HistoryStore, *, timeout: float = 10.0,
                 retries: int = 8) -> None:
        self._identity = f"{namespace}:identity:"
        self._identities = f"{namespace}:identities:"
        self._profile = f"{namespace}:profile:"
        self._history = history
        self._timeout = timeout
        self._retries = retries

    def identity_key(self, identity: Identity | str) -> str:
        """The key holding an identity's binding."""
        return self._identity + str(identity)

    def identities_key(self, customer_id: str) -> str:
        """The set of a customer's identities."""
        return self._identities + customer_id

    def profile_key(self, customer_id: str) -> str:
        """Where processors.directory keeps the profile; a customer with one exists."""
        return self._profile + customer_id

    def queue_lookup(self, pipe: Any, sightings: Sequence[Sighting]) -> None:
        """Find or create every sighting's customer: one command for the batch."""
        self.queue_bind_new(pipe, [(s.identity, s.first_binding()) for s in sightings])

    def queue_bind_new(self, pipe: Any, pairs: Sequence[tuple[Identity, Binding]]) -> None:
        """Bind each identity unless it is bound, in one command; it answers what each held."""
        # SET NX GET for every key, in one Lua call (processors.bulk): no TTL, bindings stay
        queue_claim_many(pipe, [self._identity + str(i) for i, _ in pairs],
                         [_encoder.encode(b) for _, b in pairs])

    def parse_lookup(self, answer: Sequence[Any]) -> list[Lookup]:
        """What each identity's key held before `queue_lookup`: None on first sight."""
        return [None if raw is None else _binding.decode(raw) for raw in answer]

    def queue_register(self, pipe: Any, pairs: Sequence[tuple[Identity, str]]) -> None:
        """Add newly seen (identity, customer id) pairs to their customers' sets: at most one command."""
        if pairs:
            pipe.eval(_ADD_EACH, len(pairs), *(self._identities + c for _, c in pairs),
                      *(str(i) for i, _ in pairs))

    async def identities(self, redis: Redis, customer_id: str) -> tuple[Identity, ...]:
        """The identities bound to a customer now; a set member moved away is left out."""
        async with asyncio.timeout(self._timeout):
            found = await redis.smembers(self.identities_key(customer_id))
            members = sorted(m.decode() if isinstance(m, bytes) else m for m in found)
            raws = await redis.mget([self._identity + m for m in members]) if members else []
        return tuple(identity_of(m) for m, raw in zip(members, raws, strict=True)
                     if raw is not None and _binding.decode(raw).customer_id == customer_id)

    async def link(self, redis: Redis, identity: Identity, customer_id: str, *, evidence: str,
                   actor: str, at: datetime | None = None) -> IdentityLink:
        """Join an identity to a customer, moving it (and its history) from any other."""
        def bind(current: Binding | None) -> Binding:
            if current is not None and current.customer_id == customer_id:
                raise LinkRefused("already_linked", f"{identity} already belongs to {customer_id}",
                                  _event(identity, current) if current.how == "link" else None)
            return Binding(customer_id=customer_id, since=at or datetime.now(UTC), how="link",
                           event_id=f"lnk_{uuid.uuid4().hex}", actor=actor,
                           previous=current.customer_id if current else None,
                           evidence=evidence[:MAX_EVIDENCE_CHARS])
        own = customer_id == customer_id_for(identity)
        return _event(identity, await self._move(redis, identity, bind, must_exist=not own))

    async def unlink(self, redis: Redis, identity: Identity, customer_id: str, *, evidence: str,
                     actor: str, at: datetime | None = None) -> IdentityLink:
        """Part an identity from a customer it was linked to; it gets its own customer back."""
        own = customer_id_for(identity)

        def bind(current: Binding | None) -> Binding:
            if current is None or current.customer_id != customer_id:
                done = current is not None and current.how == "unlink" and current.previous == customer_id
                raise LinkRefused("not_linked", f"{identity} does not belong to {customer_id}",
                                  _event(identity, current) if current and done else None)
            if customer_id == own:
                raise LinkRefused("not_linked", f"{identity} is {customer_id}'s own identity")
            return Binding(customer_id=own, since=at or datetime.now(UTC), how="unlink",
                           event_id=f"lnk_{uuid.uuid4().hex}", previous=customer_id, actor=actor,
                           evidence=evidence[:MAX_EVIDENCE_CHARS])
        return _event(identity, await self._move(redis, identity, bind, must_exist=False))

    async def link_stated(self, redis: Redis, stated: Identity, customer_id: str, *, via: Identity,
                          evidence: str, event_id: str, at: datetime) -> IdentityLink | None:
        """Bind an identity a customer stated in their own message, only if it was never seen.

        An identity that already has a customer is never moved by a statement — anyone can
        type anyone's address — and None is returned: an agent may link it through the API.
        """
        binding = Binding(customer_id=customer_id, since=at, how="stated", event_id=event_id,
                          actor=f"message {event_id}", evidence=evidence[:MAX_EVIDENCE_CHARS],
                          via=str(via))
        async with asyncio.timeout(self._timeout):
            raw = await redis.set(self.identity_key(stated), _encoder.encode(binding), nx=True, get=True)
            # the same binding back means this message made it before a restart
            if raw is not None and not (isinstance(raw, bytes) and _binding.decode(raw) == binding):
                return None
            await redis.sadd(self.identities_key(customer_id), str(stated))
        return _event(stated, binding)

    async def _move(self, redis: Redis, identity: Identity, bind: Bind, *, must_exist: bool) -> Binding:
        key = self.identity_key(identity)
        script = redis.register_script(_MOVE)  # EVALSHA, loading the script where it is missing
        async with asyncio.timeout(self._timeout):
            for _ in range(self._retries):
                raw = await redis.get(key)
                current = None if raw is None else _binding.decode(raw)
                new = bind(current)
                keys = [key, *self._script_keys(new.customer_id)]
                if current is not None:
                    keys += self._script_keys(current.customer_id)[:3]
                args = [raw or b"", _encoder.encode(new), str(identity), self._history.cap, int(must_exist)]
                done = await script(keys=keys, args=args)
                if done == b"unknown":
                    raise LinkRefused("unknown_customer", f"no customer {new.customer_id}")
                if done == b"ok":
                    return new
                # b"changed": another link or a first sight got there between GET and script
        raise TransientError(f"{identity} kept changing during the link; retry", retry_after=1.0)

    def _script_keys(self, customer_id: str) -> list[str]:
        return [self.identities_key(customer_id), self._history.history_key(customer_id),
                self._history.recent_key(customer_id), self.profile_key(customer_id)]

    def customer_keys(self, customer_id: str) -> tuple[str, ...]:
        """Every key a customer lives in: it exists while one of them does."""
        return tuple(self._script_keys(customer_id))


