"""Identity bindings in Redis: who each identity is, each customer's identities, and links.

Keys, under a namespace `<ns>`:
- `<ns>:{p<N>}:identity:<kind>:<value>`   the identity's `Binding` (JSON): customer, since, how;
- `<ns>:{p<N>}:identities:<customer id>`  set of the customer's identities (`kind:value`);
- `<ns>:{p<N>}:moving:<kind>:<value>`     a link or unlink under way across slots (`Plan`).

The decisions over a binding are processors.intake.identify's; this module only reads and
writes them, one command per batch on the hot path, and makes links atomically in Lua.
Tags (processors.stores.tags) follow the history store's: an identity's by the identity,
a customer's keys by the customer.

A link touches the binding and both customers' keys: one Lua call when they share a slot
(always on one node). On a Redis Cluster across slots it is four steps, each one call in
one slot, that a crash may cut anywhere (decision 0022): `begin` changes the binding and
keeps the plan beside it; `copy` adds the identity, its history lines and conversations to
the new customer (a set member and hash fields: copied twice, they are there once); `drop`
takes what was copied from the old one; `end` removes the plan. Every later link or unlink
of the identity, the same request replayed included, first finishes a plan it finds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from processors.intake.identify import MAX_EVIDENCE_CHARS, Binding, Lookup, Sighting, identity_of
from processors.stores.bulk import queue_claim_many, read_many
from processors.stores.history import HistoryStore
from processors.stores.tags import hash_tag, on_cluster, split
from schemas.errors import PermanentError, TransientError
from schemas.identified import IdentityLink
from schemas.identity import Identity
from schemas.ids import customer_id_for

__all__ = ["Copied", "IdentityStore", "LinkRefused", "Plan"]

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
# the steps of a move across slots (module docstring); KEYS: binding, plan. ARGV: binding
# read, new binding, plan. A plan still there is another move to finish first.
_BEGIN = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 'changed' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'pending' end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 'ok'
"""
# KEYS: the new customer's identities, history, recent. ARGV: identity, history cap, the
# number of lines, then (score, line) pairs, then (conversation, summary) pairs
_COPY = """
redis.call('SADD', KEYS[1], ARGV[1])
local lines = tonumber(ARGV[3])
for i = 4, 3 + 2 * lines, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
if lines > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[2]) - 1) end
for i = 4 + 2 * lines, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
return 'ok'
"""
# KEYS: the old customer's identities, history, recent. ARGV: identity, the number of
# lines, the lines, then the conversations; a summary written since by another identity stays
_DROP = """
redis.call('SREM', KEYS[1], ARGV[1])
local lines = tonumber(ARGV[2])
for i = 3, 2 + lines do redis.call('ZREM', KEYS[2], ARGV[i]) end
for i = 3 + lines, #ARGV do
  local summary = redis.call('HGET', KEYS[3], ARGV[i])
  if summary and cjson.decode(summary).identity == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[i]) end
end
return 'ok'
"""
# KEYS: plan. ARGV: the plan finished
_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 'ok'
"""
_encoder = msgspec.json.Encoder()
_binding = msgspec.json.Decoder(Binding)


class Plan(msgspec.Struct, frozen=True):
    """A move across slots under way: the identity goes from `source` ("" for none) to `target`."""

    identity: str
    target: str
    source: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Copied:
    """What `copy` read from the old customer and added to the new one: what `drop` takes away."""

    lines: list[bytes]
    conversations: list[bytes]


_plan = msgspec.json.Decoder(Plan)



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

    def moving_key(self, identity: Identity | str) -> str:
        """Where a move of the identity across slots keeps its plan until it is finished."""
        name = str(identity)
        return f"{self._ns}:{self._tags.of(name)}moving:{name}"

    async def _move(self, redis: Redis, identity: Identity, bind: Bind, *, must_exist: bool) -> Binding:
        key = self.identity_key(identity)
        script = redis.register_script(_MOVE)  # EVALSHA, loading the script where it is missing
        async with asyncio.timeout(self._timeout):
            await self.finish(redis, identity)  # a move cut short before: its replay ends it first
            for _ in range(self._retries):
                raw = await redis.get(key)
                current = None if raw is None else _binding.decode(raw)
                new = bind(current)
                keys = [key, *self._script_keys(new.customer_id)]
                if current is not None:
                    keys += self._script_keys(current.customer_id)[:3]
                if on_cluster(redis) and len({hash_tag(k) for k in keys}) > 1:
                    plan = await self.begin(redis, identity, raw, new, must_exist=must_exist)
                    if plan is None:
                        continue
                    await self.drop(redis, plan, await self.copy(redis, plan))
                    await self.end(redis, plan)
                    return new
                args = [raw or b"", _encoder.encode(new), str(identity), self._history.cap, int(must_exist)]
                done = await script(keys=keys, args=args)
                if done == b"unknown":
                    raise LinkRefused("unknown_customer", f"no customer {new.customer_id}")
                if done == b"ok":
                    return new
                # b"changed": another link or a first sight got there between GET and script
        raise TransientError(f"{identity} kept changing during the link; retry", retry_after=1.0)

    async def begin(self, redis: Redis, identity: Identity, read: bytes | str | None, new: Binding, *,
                    must_exist: bool) -> Plan | None:
        """Step 1 across slots: bind the identity anew, keeping the plan; None if the binding changed."""
        if must_exist and not await redis.exists(*self._script_keys(new.customer_id)):
            raise LinkRefused("unknown_customer", f"no customer {new.customer_id}")
        current = None if read is None else _binding.decode(read)
        plan = Plan(identity=str(identity), target=new.customer_id,
                    source=current.customer_id if current else "", event_id=new.event_id or "")
        done = await redis.eval(_BEGIN, 2, self.identity_key(identity), self.moving_key(identity),
                                read or b"", _encoder.encode(new), _encoder.encode(plan))
        if done == b"pending":
            await self.finish(redis, identity)
        return plan if done == b"ok" else None

    async def copy(self, redis: Redis, plan: Plan) -> Copied:
        """Step 2: the identity, its lines and its conversations added to the new customer."""
        copied = Copied([], [])
        args: list[Any] = []
        if plan.source:
            pipe = redis.pipeline(transaction=False)  # both keys in the old customer's slot
            pipe.zrange(self._history.history_key(plan.source), 0, -1, withscores=True)
            pipe.hgetall(self._history.recent_key(plan.source))
            lines, recent = await pipe.execute()
            for line, score in lines:
                if msgspec.json.decode(line)[0] == plan.identity:
                    copied.lines.append(line)
                    args += (repr(score), line)
            summaries: list[Any] = []
            for conversation, summary in recent.items():
                if msgspec.json.decode(summary).get("identity") == plan.identity:
                    copied.conversations.append(conversation)
                    summaries += (conversation, summary)
            args += summaries
        target = self._script_keys(plan.target)[:3]
        await redis.eval(_COPY, 3, *target, plan.identity, self._history.cap, len(copied.lines), *args)
        return copied

    async def drop(self, redis: Redis, plan: Plan, copied: Copied) -> None:
        """Step 3: what was copied taken from the old customer, and the identity from its set."""
        if plan.source:
            await redis.eval(_DROP, 3, *self._script_keys(plan.source)[:3], plan.identity,
                             len(copied.lines), *copied.lines, *copied.conversations)

    async def end(self, redis: Redis, plan: Plan) -> None:
        """Step 4: the plan removed; the move is done."""
        await redis.eval(_END, 1, self.moving_key(plan.identity), _encoder.encode(plan))

    async def finish(self, redis: Redis, identity: Identity | str) -> Plan | None:
        """Finish a move of the identity that was cut short (its plan is still there); the plan, if any."""
        raw = await redis.get(self.moving_key(identity))
        if raw is None:
            return None
        plan = _plan.decode(raw)
        await self.drop(redis, plan, await self.copy(redis, plan))
        await self.end(redis, plan)
        return plan

    def _script_keys(self, customer_id: str) -> list[str]:
        return [self.identities_key(customer_id), self._history.history_key(customer_id),
                self._history.recent_key(customer_id), self.profile_key(customer_id)]

    def customer_keys(self, customer_id: str) -> tuple[str, ...]:
        """Every key a customer lives in: it exists while one of them does."""
        return tuple(self._script_keys(customer_id))


