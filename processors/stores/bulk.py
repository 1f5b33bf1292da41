"""Whole-batch Redis commands: one command per batch instead of one per message.

The client, not Redis, is the cost of a pipeline of hundreds of small commands (each is
packed, and each reply read under its own timeout), so a batch's claims are one Lua call
and its reads one MGET. On a `Batch` each call is split per hash tag
(processors.stores.tags), so the keys of one Lua call share one Cluster slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from processors.stores.tags import pipeline, split

__all__ = [
    "CLAIM_MANY", "HSET_MANY", "READ_EACH", "SET_MANY", "queue_claim_many", "queue_hset_many",
    "queue_mget", "queue_read_each", "queue_set_many", "read_many",
]

# SET key value [EX ttl]: no TTL when ttl is 0
_PUT = """
local function put(key, value, ttl)
  if ttl > 0 then
    redis.call('SET', key, value, 'EX', ttl)
  else
    redis.call('SET', key, value)
  end
end
"""

# the values of a call as one NUL-joined argument (ARGV[2]): the client packs one argument
# instead of one per key, which was most of a batch's cost on the client
_SPLIT = """
local function split(blob)
  local out, at = {}, 1
  while true do
    local stop = string.find(blob, '\\0', at, true)
    if not stop then
      out[#out + 1] = string.sub(blob, at)
      return out
    end
    out[#out + 1] = string.sub(blob, at, stop - 1)
    at = stop + 1
  end
end
"""

# SET key value NX [EX ttl] for every key; returns what each key held before (nil = claimed)
CLAIM_MANY = _PUT + _SPLIT + """
local ttl = tonumber(ARGV[1])
local values = split(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local previous = redis.call('GET', key)
  if not previous then put(key, values[i], ttl) end
  out[i] = previous or false
end
return out
"""

# SET key value [EX ttl] for every key, the values NUL-joined in ARGV[2]
SET_MANY = _PUT + _SPLIT + """
local ttl = tonumber(ARGV[1])
local values = split(ARGV[2])
for i, key in ipairs(KEYS) do put(key, values[i], ttl) end
return #KEYS
"""
# the same, one argument per value: for values that hold a NUL byte themselves
_SET_EACH = _PUT + """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do put(key, ARGV[i + 1], ttl) end
return #KEYS
"""
_CLAIM_EACH = _PUT + """
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local previous = redis.call('GET', key)
  if not previous then put(key, ARGV[i + 1], ttl) end
  out[i] = previous or false
end
return out
"""


def _joined(values: Sequence[str | bytes]) -> bytes | None:
    """The values NUL-joined as one argument, or None when one of them holds a NUL itself."""
    raw = [v.encode() if isinstance(v, str) else v for v in values]
    blob = b"\x00".join(raw)
    # one count in C, not a search per value: the separators must be the only NULs
    return blob if blob.count(0) == max(len(raw) - 1, 0) else None


def queue_claim_many(pipe: Any, keys: Sequence[str], values: Sequence[str | bytes],
                     ttl_seconds: int = 0) -> None:
    """Queue one claim of many keys; its answer lists each key's previous value or None."""
    def queue(pipe: Any, part: list[int]) -> None:
        mine = [values[i] for i in part]
        blob = _joined(mine)
        if blob is None:
            pipe.eval(_CLAIM_EACH, len(part), *(keys[i] for i in part), ttl_seconds, *mine)
        else:
            pipe.eval(CLAIM_MANY, len(part), *(keys[i] for i in part), ttl_seconds, blob)
    split(pipe, keys, queue)


def queue_set_many(pipe: Any, pairs: Sequence[tuple[str, str | bytes]], ttl_seconds: int = 0) -> None:
    """Queue one write of many keys."""
    def queue(pipe: Any, part: list[int]) -> None:
        values = [pairs[i][1] for i in part]
        blob = _joined(values)
        if blob is None:
            pipe.eval(_SET_EACH, len(part), *(pairs[i][0] for i in part), ttl_seconds, *values)
        else:
            pipe.eval(SET_MANY, len(part), *(pairs[i][0] for i in part), ttl_seconds, blob)
    split(pipe, [k for k, _ in pairs], queue)

# one read command applied to every key: ARGV = the command and its extra arguments
READ_EACH = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call(ARGV[1], key, unpack(ARGV, 2)) end
return out
"""


def queue_read_each(pipe: Any, keys: Sequence[str], *command: str | int) -> None:
    """Queue one command that runs `command` on every key; its answer is a list, in order."""
    split(pipe, keys, lambda pipe, part: pipe.eval(READ_EACH, len(part), *(keys[i] for i in part), *command))


def queue_mget(pipe: Any, keys: Sequence[str]) -> None:
    """Queue one MGET of `keys` (one per hash tag on a `Batch`); its answer is a list, in order."""
    # as a plain command: redis-py blocks `mget` in a Cluster pipeline though the keys share a slot
    split(pipe, keys, lambda pipe, part: pipe.execute_command("MGET", *(keys[i] for i in part)))


async def read_many(redis: Any, keys: Sequence[str]) -> list[Any]:
    """GET every key in one round trip, one MGET per hash tag; values in the order of `keys`."""
    if not keys:
        return []
    pipe = pipeline(redis)
    queue_mget(pipe, keys)
    [values] = await pipe.execute()
    return list(values)


# HSET each hash's field/value pairs (after DEL when ARGV[2] is 1) and refresh its TTL;
# ARGV = ttl, replace, then per key: the number of pairs followed by the pairs
HSET_MANY = """
local ttl, replace = tonumber(ARGV[1]), ARGV[2] == '1'
local at = 3
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  if replace then redis.call('DEL', key) end
  for j = 1, n do
    redis.call('HSET', key, ARGV[at + 2 * j - 1], ARGV[at + 2 * j])
  end
  at = at + 1 + 2 * n
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return #KEYS
"""


def queue_hset_many(pipe: Any, changes: Mapping[str, Mapping[str, str | bytes]], ttl_seconds: int = 0, *,
                    replace: bool = False) -> None:
    """Queue field writes (hash → field → value) as one command; `replace` drops each hash's old fields."""
    items = list(changes.items())
    keys = [key for key, _ in items]

    def queue(pipe: Any, part: list[int]) -> None:
        args: list[Any] = [ttl_seconds, int(replace)]
        for i in part:
            fields = items[i][1]
            args.append(len(fields))
            for name, value in fields.items():
                args += (name, value)
        pipe.eval(HSET_MANY, len(part), *(keys[i] for i in part), *args)
    split(pipe, keys, queue)
