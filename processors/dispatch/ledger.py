"""Each item's ledger in Redis: its plan and its deliveries' states in one hash, planned in Lua.

`<ns>:handoff:item:<source>` is a hash: `plan` (the destinations, JSON) and `d:<name>`
(`delivering:<record>`, then the outcome and the record, per destination). The batch's
first round trip is one script (`PLAN`) that reads every card and, for each item never
seen, chooses its destinations, writes its card and saves its plan with every delivery
claimed: all before any tool is called, as decision 0003 asks, with nothing but the
record, the live policy and what the script reads. An item seen before is answered
whole: its plan and what each delivery came to.

The script is a second implementation of `processors.dispatch.plan` (whose Python stays
the one that is read and tested): the stage plans the batch again in Python from the
cards the script read and checks the script against it. What the script leaves to
Python (a card it cannot read, or one holding thread references in its JSON, as no card
written since has) and anything it got wrong is written by one more round trip before
delivery.

Before this layout (issue #15), the item's key was a string (`pending:<record>` or
`applied:<destinations>`) and each delivery had its own key, `<ns>:handoff:<delivery
id>`. The script plans a `pending:` item afresh; an `applied:` one is converted
(`MIGRATE`) with the states of its old delivery keys, in that extra round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from processors.dispatch.items import Item, receipt_notice
from processors.dispatch.plan import card_for, escalation_destinations
from processors.intake.continuation import TAG as CONTINUATION_TAG
from processors.policy.model import Policy
from schemas.routed import RoutedConversation

__all__ = ["MIGRATE", "PLAN", "Answer", "Ledger", "policy_blob"]

_encode = msgspec.json.Encoder().encode
_names = msgspec.json.Decoder(tuple[str, ...])

# KEYS: the batch's cards, then its items. ARGV: item TTL, card TTL, the number of cards,
# the policy (queue → destinations, default queue, known names), the items' specs
# ([card index, kind, queue, ARGV index of the card as if new, continuation, extra
# destinations, record]), then those cards. Returns each card as read, the card written
# last per conversation, and per item: {'new', plan} | {'seen', hash} | {'old', value} |
# {'later'} (left to Python) | {'dup'} (repeated in the batch).
PLAN = """
local ttl, card_ttl, ncards = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local policy, specs = cjson.decode(ARGV[4]), cjson.decode(ARGV[5])
local known = {}
for _, n in ipairs(policy.k) do known[n] = true end
local statuses = {open = true, waiting_on_customer = true, resolved = true, closed = true}

local function add(list, more)
  local have = {}
  for _, n in ipairs(list) do have[n] = true end
  for _, n in ipairs(more) do
    if not have[n] then list[#list + 1] = n; have[n] = true end
  end
  return list
end
local function queue_dests(q)
  local d = policy.q[q]
  if d == nil then d = policy.q[policy.d] end
  local out = {}
  for _, n in ipairs(d) do out[#out + 1] = n end
  return out
end
local function kept(names)
  local out = {}
  for _, n in ipairs(names) do if known[n] then out[#out + 1] = n end end
  return out
end
-- card_for with a previous card: the message's facts, the card's history; a verified
-- answer to a continuation mail keeps the conversation's channel, recipient and thread
local function follow(prev, fresh, continued)
  local f = cjson.decode(fresh)
  f.status, f.opened_at = prev.status, prev.opened_at
  if f.subject == cjson.null then f.subject = prev.subject end
  if f.customer_name == cjson.null then f.customer_name = prev.customer_name end
  if f.callback == cjson.null then f.callback = prev.callback end
  f.messages = (tonumber(prev.messages) or 0) + 1
  if continued then
    f.channel, f.recipient, f.references = prev.channel, prev.recipient, prev.references
    local cited = prev.in_reply_to
    if cited ~= nil and cited ~= cjson.null and cited ~= '' then f.in_reply_to = cited end
  end
  return f
end
-- a transfer's handoff: the card moves queue, keeping the rest (`plan._moved`)
local function moved(prev, patch)
  local f = {}
  for k, v in pairs(prev) do f[k] = v end
  for k, v in pairs(cjson.decode(patch)) do f[k] = v end
  return f
end

local cards, before, wrote = {}, {}, {}
for i = 1, ncards do
  local flat = redis.call('HGETALL', KEYS[i])
  local c, fields = {names = {}, stale = false}, {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  if fields.card then
    local ok, card = pcall(cjson.decode, fields.card)
    if ok and type(card) == 'table' and type(card.destinations) == 'table'
        and next(card.destinations) == nil then
      if statuses[fields.status] then card.status = fields.status end
      c.card = card
      for j = 1, #flat, 2 do
        if string.sub(flat[j], 1, 5) == 'dest:' then c.names[#c.names + 1] = string.sub(flat[j], 6) end
      end
    else
      c.stale = true
    end
  end
  cards[i], before[i], wrote[i] = c, flat, false
end

local out = {}
for i, s in ipairs(specs) do
  local key, ci, kind = KEYS[ncards + i], s[1], s[2]
  local c = cards[ci]
  local t = kind ~= 'dup' and redis.call('TYPE', key).ok or 'none'
  local old = t == 'string' and redis.call('GET', key) or nil
  if kind == 'dup' then
    out[i] = {'dup'}
  elseif t == 'hash' then
    out[i] = {'seen', redis.call('HGETALL', key)}
  elseif old and string.sub(old, 1, 8) == 'applied:' then
    out[i] = {'old', old}
  else
    local dests = nil
    if c.stale then
      dests = nil
    elseif kind == 'm' or kind == 't' then
      if c.card == nil then
        -- a handoff with no card has nothing to move: skipped
        dests = {}
        if kind == 'm' then
          dests = queue_dests(s[3])
          c.card, c.raw = cjson.decode(ARGV[s[4]]), ARGV[s[4]]
        end
      else
        if c.card.queue ~= s[3] then
          dests = queue_dests(s[3])
          for _, n in ipairs(c.names) do redis.call('HDEL', KEYS[ci], 'dest:' .. n) end
          c.names = {}
        else
          dests = kept(c.names)
          if #dests == 0 then dests = queue_dests(s[3]) end
        end
        if kind == 'm' then
          c.card = follow(c.card, ARGV[s[4]], s[5] == 1)
        else
          c.card = moved(c.card, ARGV[s[4]])
        end
        c.raw = nil
      end
      -- the conversation's last card is written once, after the batch's items
      if c.card ~= nil then add(c.names, dests); c.write = true end
    elseif kind == 'n' and c.card ~= nil then
      dests = kept(c.names)
      if #dests == 0 then dests = queue_dests(c.card.queue) end
      if #s[6] > 0 then dests = add(add({}, dests), s[6]) end
    else
      dests = {}
    end
    if dests == nil then
      out[i] = {'later'}
    else
      if old then redis.call('DEL', key) end
      local plan = '[]'
      if #dests > 0 then plan = cjson.encode(dests) end
      local fields = {'plan', plan}
      for _, d in ipairs(dests) do
        fields[#fields + 1] = 'd:' .. d
        fields[#fields + 1] = 'delivering:' .. s[7]
      end
      redis.call('HSET', key, unpack(fields))
      if ttl > 0 then redis.call('EXPIRE', key, ttl) end
      out[i] = {'new', plan}
    end
  end
end
for i, c in ipairs(cards) do
  if c.write then
    -- a new conversation's card as Python made it; a merged one encoded here
    -- an empty JSON array would come back an object: left out, it is the default
    if type(c.card.references) == 'table' and next(c.card.references) == nil then c.card.references = nil end
    wrote[i] = c.raw or cjson.encode(c.card)
    redis.call('HSET', KEYS[i], 'card', wrote[i])
    if card_ttl > 0 then redis.call('EXPIRE', KEYS[i], card_ttl) end
  end
end
return {before, wrote, out}
"""

# An item of the old layout (`applied:<destinations>` and one key per delivery) as a
# ledger: KEYS[1] the item, then its deliveries' old keys; ARGV: TTL, the record claiming
# what was never claimed ("" to claim nothing), the plan, then the destinations. Returns
# what each old key held.
MIGRATE = """
local ttl, owner = tonumber(ARGV[1]), ARGV[2]
local fields, out = {'plan', ARGV[3]}, {}
for i = 2, #KEYS do
  local previous = redis.call('GET', KEYS[i])
  out[i - 1] = previous
  if previous or owner ~= '' then
    fields[#fields + 1] = 'd:' .. ARGV[i + 2]
    fields[#fields + 1] = previous or ('delivering:' .. owner)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return out
"""


def policy_blob(policy: Policy) -> bytes:
    """What the script needs of a policy: each queue's destinations, the default, the names known."""
    known = set(policy.destinations).union(*(q.destinations for q in policy.queues.values()))
    return _encode({"q": {n: list(q.destinations) for n, q in policy.queues.items()},
                    "d": policy.default_queue, "k": sorted(known)})


@dataclass(frozen=True, slots=True)
class Answer:
    """What the script did with one item, and what its ledger held if it was there before."""

    state: str
    # the plan saved ('new'), found ('seen') or in the old layout ('old')
    plan: tuple[str, ...] | None = None
    # destination → what its delivery held ('seen')
    deliveries: Mapping[str, bytes] | None = None
    # the old string value ('old')
    old: bytes | None = None

    def previous(self) -> bytes | None:
        """The item's claim as `plan.plan_batch` reads it: its saved plan, or None to plan it."""
        if self.state == "old":
            return self.old
        if self.state == "seen" and self.plan is not None:
            return b"applied:" + _encode(list(self.plan))
        return None


class Ledger:
    """The item ledgers of one namespace; the stage runs the pipelines."""

    def __init__(self, prefix: str, ttl_seconds: int, card_ttl_seconds: int) -> None:
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._card_ttl = card_ttl_seconds

    def key(self, source: str) -> str:
        """The hash of one item."""
        return f"{self._prefix}item:{source}"

    def queue_plan(self, pipe: Any, items: Sequence[Item], *, card_keys: Sequence[str],
                   index: Mapping[str, int], policy: Policy, blob: bytes, now: datetime) -> None:
        """Queue the batch's first round trip: read the cards, plan and claim what is new.

        `card_keys` are the cards of the conversations `index` numbers; `blob` is `policy_blob(policy)`.
        """
        specs: list[list[Any]] = []
        fresh: list[bytes] = []
        seen: set[str] = set()
        for item in items:
            spec: list[Any] = [index[item.conversation_id] + 1, "dup", "", 0, 0, [], item.record.owner]
            if item.source not in seen:
                seen.add(item.source)
                spec[1:6] = _spec(item, policy, now, fresh)
            specs.append(spec)
        pipe.eval(PLAN, len(card_keys) + len(items), *card_keys, *(self.key(i.source) for i in items),
                  self._ttl, self._card_ttl, len(card_keys), blob, _encode(specs), *fresh)

    def queue_migrate(self, pipe: Any, item: Item, plan: tuple[str, ...],
                      delivery_keys: Sequence[str], *, claim: bool) -> None:
        """Queue the conversion of an item of the old layout; answers what each old delivery held.

        With `claim`, a delivery never claimed is claimed by the item's record, as the old
        layout's second round trip would have.
        """
        pipe.eval(MIGRATE, 1 + len(delivery_keys), self.key(item.source), *delivery_keys,
                  self._ttl, item.record.owner if claim else "", _encode(list(plan)), *plan)

    @staticmethod
    def parse(answer: Sequence[Any]) -> tuple[list[Any], list[bytes | None], list[Answer]]:
        """The cards as read, the last card written per conversation, and each item's answer."""
        before, wrote, out = answer
        return list(before), [w or None for w in wrote], [_answer(a) for a in out]

    def claims(self, plan: Sequence[str], owner: str) -> dict[str, str | bytes]:
        """A ledger's fields once planned: the plan, each delivery claimed by `owner`."""
        return {"plan": _encode(list(plan)), **{f"d:{d}": f"delivering:{owner}" for d in plan}}


def _spec(item: Item, policy: Policy, now: datetime, fresh: list[bytes]) -> list[Any]:
    """[kind, queue, ARGV index of the card as if new, continuation, extra destinations] of one item."""
    routed = item.routed
    if routed is not None:
        if routed.message is None:
            fresh.append(_encode(_moving(routed, now)))
            return ["t", routed.queue, 5 + len(fresh), 0, []]
        card = card_for(routed, None, now)
        fresh.append(_encode(card))
        continued = int(CONTINUATION_TAG in routed.message.tags)
        # ARGV: 5 fixed arguments, then the fresh cards
        return ["m", routed.queue, 5 + len(fresh), continued, []]
    if item.receipt is not None and not receipt_notice(item.receipt)[0]:
        return ["u", "", 0, 0, []]
    extra, _ = escalation_destinations(item.action, item.action_target, policy)
    return ["n", "", 0, 0, list(extra)]


def _moving(routed: RoutedConversation, now: datetime) -> dict[str, Any]:
    """The fields a transfer's handoff sets on the card it moves (`plan._moved`)."""
    patch: dict[str, Any] = {
        "queue": routed.queue, "tier": routed.tier, "urgency": routed.urgency, "priority": routed.priority,
        "updated_at": now, "agent": None, "transfers": routed.transfers, "destinations": {}}
    if routed.customer_name:
        patch["customer_name"] = routed.customer_name
    if routed.first_response_due:
        patch["first_response_due"] = routed.first_response_due
    return patch


def _answer(raw: Sequence[Any]) -> Answer:
    state = raw[0].decode()
    if state == "new":
        return Answer(state, plan=_names.decode(raw[1]))
    if state == "seen":
        flat = raw[1]
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        saved = fields.get(b"plan")
        return Answer(state, plan=_names.decode(saved) if saved is not None else None,
                      deliveries={k[2:].decode(): v for k, v in fields.items() if k.startswith(b"d:")})
    if state == "old":
        return Answer(state, old=raw[1])
    return Answer(state)
