"""Directory: who a customer is to us — tier and name — in Redis, and a CSV import for it.

Key `<ns>:profile:<customer id>`: a hash of `tier`, `name`, `updated_at`, `updated_by`.
Reading the profiles of a batch (tier, name and identity set) is one command queued on
the caller's pipeline.

The CSV has a header line naming its columns, in any order: `identity` (an email
address, an E.164 phone number, an @handle or `chat:<session>`) and at least one of
`tier` and `name`; an empty cell leaves that field as it is. Whether a tier exists is
the policy's business, so the caller passes the valid ones.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.typing import EncodableT

from processors.intake.identify import Binding, identity_of, parse_identity
from processors.stores.identities import IdentityStore
from processors.stores.tags import pipeline, split
from schemas.errors import ConfigError, ParseError
from schemas.identified import CustomerProfile
from schemas.identity import Identity
from schemas.ids import customer_id_for

__all__ = ["Directory", "DirectoryRow", "ImportCounts", "parse_directory_csv"]

COLUMNS = ("identity", "tier", "name")
MAX_NAME_CHARS = 200
# KEYS: profile, identities, for every customer
_READ_PROFILES = """
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = {redis.call('HMGET', KEYS[i], 'tier', 'name'), redis.call('SMEMBERS', KEYS[i + 1])}
end
return out
"""
Fields = dict[EncodableT, EncodableT]


@dataclass(frozen=True, slots=True)
class DirectoryRow:
    """One line of a directory CSV: an identity and what to set on its customer."""

    line: int
    identity: Identity
    tier: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What an import did."""

    rows: int
    customers_created: int
    tiers_set: int
    names_set: int


def _header(fields: Sequence[str], where: str) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, raw in enumerate(fields):
        name = raw.strip().lower()
        if name not in COLUMNS:
            expected = ", ".join(COLUMNS)
            raise ConfigError(f"unknown column {raw!r}; expected {expected}", where=f"{where} {raw}")
        if name in columns:
            raise ConfigError(f"column {name!r} appears twice", where=f"{where} {name}")
        columns[name] = i
    if "identity" not in columns or len(columns) < 2:
        raise ConfigError("the header must name 'identity' and at least one of 'tier', 'name'", where=where)
    return columns


def _row(line: int, fields: Sequence[str], columns: dict[str, int], tiers: Collection[str],
         where: str) -> DirectoryRow:
    def cell(name: str) -> str | None:
        return (fields[columns[name]].strip() or None) if name in columns else None

    try:
        identity = parse_identity(cell("identity") or "")
    except ParseError as e:
        raise ConfigError(e.reason, where=f"{where} identity") from e
    tier, name = cell("tier"), cell("name")
    if tier is not None and tier not in tiers:
        raise ConfigError(f"unknown tier {tier!r}; known: {', '.join(sorted(tiers))}", where=f"{where} tier")
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise ConfigError(f"name is longer than {MAX_NAME_CHARS} characters", where=f"{where} name")
    return DirectoryRow(line, identity, tier, name)


def parse_directory_csv(text: str, tiers: Collection[str], *,
                        source: str = "customers.csv") -> list[DirectoryRow]:
    """Read a directory CSV; a ConfigError names the file, line and column of the first problem."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    rows: list[DirectoryRow] = []
    seen: dict[Identity, int] = {}
    try:
        header = next(reader, None)
        if header is None:
            raise ConfigError("the file is empty; a header line is required", where=f"{source}:1")
        columns = _header(header, f"{source}:1")
        end = reader.line_num
        for fields in reader:
            # a quoted cell may span lines: a row is named by the line it starts on
            line, end = end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise ConfigError(f"{len(fields)} fields, the header has {len(header)}",
                                  where=f"{source}:{line}")
            row = _row(line, fields, columns, tiers, f"{source}:{line}")
            if row.identity in seen:
                raise ConfigError(f"{row.identity} is also on line {seen[row.identity]}",
                                  where=f"{source}:{line} identity")
            seen[row.identity] = line
            rows.append(row)
    except csv.Error as e:
        raise ConfigError(str(e), where=f"{source}:{reader.line_num}") from e
    return rows


def _stamped(fields: Fields, actor: str, now: datetime) -> Fields:
    return {**fields, "updated_at": now.isoformat(), "updated_by": actor}


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


class Directory:
    """Customer profiles in Redis, beside the identities that say who each customer is."""

    def __init__(self, identities: IdentityStore, *, timeout: float = 30.0, chunk: int = 500) -> None:
        self._ids = identities
        self._timeout = timeout
        self._chunk = chunk

    def queue_read_profiles(self, pipe: Any, customer_ids: Sequence[str]) -> None:
        """Read each customer's tier, name and identities: one command for the batch."""
        keys = [self._ids.profile_key(c) for c in customer_ids]
        split(pipe, keys, lambda pipe, part: pipe.eval(_READ_PROFILES, 2 * len(part), *(
            k for i in part for k in (keys[i], self._ids.identities_key(customer_ids[i])))))

    def parse_profiles(self, customer_ids: Sequence[str], answer: Sequence[Any]) -> list[CustomerProfile]:
        """The profiles `queue_read_profiles` asked for, in order."""
        out = []
        for i, customer_id in enumerate(customer_ids):
            (tier, name), members = answer[i]
            out.append(CustomerProfile(
                customer_id=customer_id, tier=_text(tier), name=_text(name),
                identities=tuple(identity_of(m) for m in sorted(m.decode() for m in members))))
        return out

    async def exists(self, redis: Redis, customer_id: str) -> bool:
        """True when the customer has identities, a profile, history or conversations."""
        async with asyncio.timeout(self._timeout):
            return bool(await redis.exists(*self._ids.customer_keys(customer_id)))

    async def set_tier(self, redis: Redis, customer_id: str, tier: str, actor: str) -> None:
        """Set a customer's tier; whether the tier exists is the caller's check."""
        await self._set(redis, customer_id, {"tier": tier}, actor)

    async def set_name(self, redis: Redis, customer_id: str, name: str, actor: str) -> None:
        """Set a customer's name."""
        await self._set(redis, customer_id, {"name": name[:MAX_NAME_CHARS]}, actor)

    async def _set(self, redis: Redis, customer_id: str, fields: Fields, actor: str) -> None:
        async with asyncio.timeout(self._timeout):
            await redis.hset(self._ids.profile_key(customer_id),
                             mapping=_stamped(fields, actor, datetime.now(UTC)))

    async def import_rows(self, redis: Redis, rows: Sequence[DirectoryRow], actor: str) -> ImportCounts:
        """Resolve each row's identity to its customer (creating it) and set tier and name."""
        created = tiers = names = 0
        async with asyncio.timeout(self._timeout):
            for start in range(0, len(rows), self._chunk):
                chunk = rows[start:start + self._chunk]
                new, t, n = await self._import_chunk(redis, chunk, actor)
                created, tiers, names = created + new, tiers + t, names + n
        return ImportCounts(len(rows), created, tiers, names)

    async def _import_chunk(self, redis: Redis, rows: Sequence[DirectoryRow],
                            actor: str) -> tuple[int, int, int]:
        now = datetime.now(UTC)
        pipe = pipeline(redis)  # split per hash tag on a Cluster
        self._ids.queue_bind_new(pipe, [
            (row.identity, Binding(customer_id=customer_id_for(row.identity), since=now, how="import",
                                   actor=actor)) for row in rows])
        [answer] = await pipe.execute()
        lookups = self._ids.parse_lookup(answer)
        pipe = pipeline(redis)  # split per hash tag on a Cluster
        self._ids.queue_register(pipe, [(row.identity, customer_id_for(row.identity))
                                        for row, found in zip(rows, lookups, strict=True) if found is None])
        for row, found in zip(rows, lookups, strict=True):
            customer_id = found.customer_id if found else customer_id_for(row.identity)
            fields: Fields = {k: v for k, v in (("tier", row.tier), ("name", row.name)) if v}
            if fields:
                pipe.hset(self._ids.profile_key(customer_id), mapping=_stamped(fields, actor, now))
        await pipe.execute()
        created = sum(1 for found in lookups if found is None)
        return created, sum(1 for r in rows if r.tier), sum(1 for r in rows if r.name)
