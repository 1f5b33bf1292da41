"""Each item's ledger in Redis: its plan and its deliveries' states in one hash, planned in Lua.

`<ns>:{p<N>}:ledger:<conversation>|<source>` is a hash: `plan` (the destinations, JSON)
and `d:<name>` (`delivering:<record>`, then the outcome and the record, per
destination). It carries its conversation's tag, the card's, so a card and its items
share one Cluster slot, and its name holds the conversation so the tag follows from the
name (`switchboard redis retag`, decision 0021). The batch's first round trip is one
script (`PLAN`) that reads every card and, for each item never seen, chooses its
destinations, writes its card and saves its plan with every delivery claimed: all
before any tool is called, as decision 0003 asks, with nothing but the record, the live
policy and what the script reads. An item seen before is answered whole: its plan and
what each delivery came to. On a Cluster (`tags.Batch`) the script runs once per tag,
with that tag's cards and items; on one node once for the batch.

The script is a second implementation of `processors.dispatch.plan` (whose Python stays
the one that is read and tested): the stage plans the batch again in Python from the
cards the script read and checks the script against it. What the script leaves to
Python (a card it cannot read, or one holding thread references in its JSON, as no card
written since has) and anything it got wrong is written by one more round trip before
delivery.

The ledgers before the tags (`<ns>:handoff:item:<source>`, and the strings and
`<ns>:handoff:<delivery id>` keys before them) do not name their conversation, so no
migration can place them: `retag` counts them and leaves them to expire (decision 0021).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from processors.dispatch.items import Item, receipt_notice
from processors.dispatch.plan import card_for, escalation_destinations
from processors.intake.continuation import TAG as CONTINUATION_TAG
from processors.policy.model import Policy
from processors.stores.tags import Tags, split
from schemas.routed import RoutedConversation

__all__ = ["PLAN", "Answer", "Ledger", "policy_blob"]

_encode = msgspec.json.Encoder().encode
# ARGV: 5 fixed arguments, then the items' cards as if new
_FIXED = 5
_names = msgspec.json.Decoder(tuple[str, ...])

# KEYS: the batch's cards, then its items. ARGV: item TTL, card TTL, the number of cards,
# the policy (queue → destinations, default queue, known names), the items' specs
# ([card index, kind, queue, ARGV index of the card as if new, continuation, extra
# destinations, record]), then those cards. Returns each card as read, the card written
# last per conversation, and per item: {'new', plan} | {'seen', hash} | {'later'} (left to
# Python) | {'dup'} (repeated in the batch).
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
  local held = kind ~= 'dup' and redis.call('HGETALL', key) or {}
  if kind == 'dup' then
    out[i] = {'dup'}
  elseif #held > 0 then
    out[i] = {'seen', held}
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

def policy_blob(policy: Policy) -> bytes:
    """What the script needs of a policy: each queue's destinations, the default, the names known."""
    known = set(policy.destinations).union(*(q.destinations for q in policy.queues.values()))
    return _encode({"q": {n: list(q.destinations) for n, q in policy.queues.items()},
                    "d": policy.default_queue, "k": sorted(known)})


@dataclass(frozen=True, slots=True)
class Answer:
    """What the script did with one item, and what its ledger held if it was there before."""

    state: str
    # the plan saved ('new') or found ('seen')
    plan: tuple[str, ...] | None = None
    # destination → what its delivery held ('seen')
    deliveries: Mapping[str, bytes] | None = None

    def saved_plan(self) -> tuple[str, ...] | None:
        """The plan an item seen before was given (as `plan.plan_batch` takes it), or None to plan it."""
        return self.plan if self.state == "seen" else None


class Ledger:
    """The item ledgers of one namespace, tagged as `tags` says; the stage runs the pipelines."""

    def __init__(self, namespace: str, tags: Tags, ttl_seconds: int, card_ttl_seconds: int) -> None:
        self._namespace = namespace
        self._tags = tags
        self._ttl = ttl_seconds
        self._card_ttl = card_ttl_seconds

    def key(self, conversation_id: str, source: str) -> str:
        """The hash of one item, in its conversation's tag."""
        return f"{self._namespace}:{self._tags.of(conversation_id)}ledger:{conversation_id}|{source}"

    def queue_plan(self, pipe: Any, items: Sequence[Item], *, card_key: Callable[[str], str],
                   policy: Policy, blob: bytes, now: datetime) -> list[str]:
        """Queue the batch's first round trip: read the cards, plan and claim what is new.

        One call, or one per tag on a `Batch`, whose answers are merged back in the order of
        the returned conversations (the cards) and of `items`. `card_key` names a
        conversation's card; `blob` is `policy_blob(policy)`.
        """
        conversations = sorted({i.conversation_id for i in items})
        index = {c: n for n, c in enumerate(conversations)}
        specs: list[list[Any]] = []
        fresh: list[bytes | None] = []
        seen: set[str] = set()
        for item in items:
            spec: list[Any] = [0, "dup", "", 0, 0, [], item.record.owner]
            card = None
            if item.source not in seen:
                seen.add(item.source)
                spec[1:6], card = _spec(item, policy, now)
            specs.append(spec)
            fresh.append(card)
        keys = [self.key(i.conversation_id, i.source) for i in items]
        groups: list[list[str]] = []

        def queue(pipe: Any, part: list[int]) -> None:
            whole = len(part) == len(items)
            mine = conversations if whole else sorted({items[i].conversation_id for i in part})
            local = index if mine is conversations else {c: n for n, c in enumerate(mine)}
            groups.append(mine)
            cards: list[bytes] = []
            for i in part:
                spec = specs[i]
                spec[0] = local[items[i].conversation_id] + 1
                card = fresh[i]
                if card is not None:
                    cards.append(card)
                    spec[3] = _FIXED + len(cards)  # the ARGV index of the item's card as if new
            pipe.eval(PLAN, len(mine) + len(part), *(card_key(c) for c in mine), *(keys[i] for i in part),
                      self._ttl, self._card_ttl, len(mine), blob, _encode([specs[i] for i in part]), *cards)

        def merge(parts: list[list[int]], answers: list[Any]) -> list[Any]:
            before: list[Any] = [None] * len(conversations)
            wrote: list[Any] = [None] * len(conversations)
            out: list[Any] = [None] * len(items)
            for part, mine, (read, written, planned) in zip(parts, groups, answers, strict=True):
                for c, r, w in zip(mine, read, written, strict=True):
                    before[index[c]], wrote[index[c]] = r, w
                for i, answer in zip(part, planned, strict=True):
                    out[i] = answer
            return [before, wrote, out]
        split(pipe, keys, queue, merge)
        return conversations

    @staticmethod
    def parse(answer: Sequence[Any]) -> tuple[list[Any], list[bytes | None], list[Answer]]:
        """The cards as read, the last card written per conversation, and each item's answer."""
        before, wrote, out = answer
        return list(before), [w or None for w in wrote], [_answer(a) for a in out]

    def claims(self, plan: Sequence[str], owner: str) -> dict[str, str | bytes]:
        """A ledger's fields once planned: the plan, each delivery claimed by `owner`."""
        return {"plan": _encode(list(plan)), **{f"d:{d}": f"delivering:{owner}" for d in plan}}


def _spec(item: Item, policy: Policy, now: datetime) -> tuple[list[Any], bytes | None]:
    """One item's spec and its card as if new (a transfer's: the fields it moves).

    The spec: [kind, queue, the card's ARGV index (set when queued), continuation, extra destinations].
    """
    routed = item.routed
    if routed is not None:
        if routed.message is None:
            return ["t", routed.queue, 0, 0, []], _encode(_moving(routed, now))
        continued = int(CONTINUATION_TAG in routed.message.tags)
        return ["m", routed.queue, 0, continued, []], _encode(card_for(routed, None, now))
    if item.receipt is not None and not receipt_notice(item.receipt)[0]:
        return ["u", "", 0, 0, []], None
    extra, _ = escalation_destinations(item.action, item.action_target, policy)
    return ["n", "", 0, 0, list(extra)], None


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
    return Answer(state)
