"""Identity bindings in Redis: who each identity is, each customer's identities, and links.

Keys, under a namespace `<ns>`:
- `<ns>:{p<N>}:identity:<kind>:<value>`   the identity's `Binding` (JSON): customer, since, how;
- `<ns>:{p<N>}:identities:<customer id>`  set of the customer's identities (`kind:value`).

The decisions over a binding are processors.intake.identify's; this module only reads and
writes them, one command per batch on the hot path, and makes links atomically in Lua.
Tags (processors.stores.tags) follow the history store's: an identity's by the identity,
a customer's keys by the customer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from processors.intake.identify import MAX_EVIDENCE_CHARS, Binding, Lookup, Sighting, identity_of
from processors.stores.bulk import queue_claim_many, read_many
from processors.stores.history import HistoryStore
from processors.stores.tags import split
from schemas.errors import PermanentError, TransientError
from schemas.identified import IdentityLink
from schemas.identity import Identity
from schemas.ids import customer_id_for

__all__ = ["IdentityStore", "LinkRefused"]

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
        self._ns = namespace
        self._tags = history.tags
        self._history = history
        self._timeout = timeout
        self._retries = retries

    def identity_key(self, identity: Identity | str) -> str:
        """The key holding an identity's binding."""
        name = str(identity)
        return f"{self._ns}:{self._tags.of(name)}identity:{name}"

    def identities_key(self, customer_id: str) -> str:
        """The set of a customer's identities."""
        return f"{self._ns}:{self._tags.of(customer_id)}identities:{customer_id}"

    def profile_key(self, customer_id: str) -> str:
        """Where processors.directory keeps the profile; a customer with one exists."""
        return f"{self._ns}:{self._tags.of(customer_id)}profile:{customer_id}"

    def queue_lookup(self, pipe: Any, sightings: Sequence[Sighting]) -> None:
        """Find or create every sighting's customer: one command for the batch."""
        self.queue_bind_new(pipe, [(s.identity, s.first_binding()) for s in sightings])

    def queue_bind_new(self, pipe: Any, pairs: Sequence[tuple[Identity, Binding]]) -> None:
        """Bind each identity unless it is bound, in one command; it answers what each held."""
        # SET NX GET for every key, in one Lua call (processors.bulk): no TTL, bindings stay
        queue_claim_many(pipe, [self.identity_key(i) for i, _ in pairs],
                         [_encoder.encode(b) for _, b in pairs])

    def parse_lookup(self, answer: Sequence[Any]) -> list[Lookup]:
        """What each identity's key held before `queue_lookup`: None on first sight."""
        return [None if raw is None else _binding.decode(raw) for raw in answer]

    def queue_register(self, pipe: Any, pairs: Sequence[tuple[Identity, str]]) -> None:
        """Add newly seen (identity, customer id) pairs to their customers' sets: at most one command."""
        keys = [self.identities_key(c) for _, c in pairs]
        split(pipe, keys, lambda pipe, part: pipe.eval(
            _ADD_EACH, len(part), *(keys[i] for i in part), *(str(pairs[i][0]) for i in part)))

    async def identities(self, redis: Redis, customer_id: str) -> tuple[Identity, ...]:
        """The identities bound to a customer now; a set member moved away is left out."""
        async with asyncio.timeout(self._timeout):
            found = await redis.smembers(self.identities_key(customer_id))
            members = sorted(m.decode() if isinstance(m, bytes) else m for m in found)
            raws = await read_many(redis, [self.identity_key(m) for m in members])
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
        linked = _event(identity, await self._move(redis, identity, bind, must_exist=not own))
        async with asyncio.timeout(self._timeout):
            # an agent's link settles the customer's own suggestion of it
            await redis.hdel(self.suggested_key(customer_id), str(identity))
        return linked

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

    async def suggest(self, redis: Redis, stated: Identity, customer_id: str, *, via: Identity,
                      evidence: str, event_id: str, at: datetime) -> IdentityLink:
        """Keep an identity a customer stated as theirs as a suggestion; nothing is linked.

        Anyone can type anyone's address into a chat or an API call, so a statement never
        binds an identity: it waits, with its evidence, for an agent to link it. The same
        message suggests the same thing on a replay.
        """
        binding = Binding(customer_id=customer_id, since=at, how="stated", event_id=event_id,
                          actor=f"message {event_id}", evidence=evidence[:MAX_EVIDENCE_CHARS],
                          via=str(via))
        async with asyncio.timeout(self._timeout):
            await redis.hset(self.suggested_key(customer_id), str(stated), _encoder.encode(binding))
        return IdentityLink(action="suggest", identity=stated, customer_id=customer_id,
                            previous_customer_id=None, evidence=binding.evidence or "",
                            actor=binding.actor or "", at=at, event_id=event_id)

    async def suggestions(self, redis: Redis, customer_id: str) -> dict[str, Binding]:
        """The identities a customer stated as theirs and no agent has linked yet."""
        async with asyncio.timeout(self._timeout):
            raw = await redis.hgetall(self.suggested_key(customer_id))
        return {(k.decode() if isinstance(k, bytes) else k): _binding.decode(v)
                for k, v in sorted(raw.items())}

    def suggested_key(self, customer_id: str) -> str:
        """The hash of a customer's suggested identities."""
        return f"{self._ns}:{self._tags.of(customer_id)}suggested:{customer_id}"

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


