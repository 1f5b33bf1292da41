"""Who a message is from: one identity kind and its normalised value."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from schemas.errors import ParseError

__all__ = ["Identity", "IdentityKind", "parse_sender"]

IdentityKind = Literal["email", "phone", "x", "xid", "chat"]

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_HANDLE = re.compile(r"^@[A-Za-z0-9_]{1,15}$")


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """One way to reach a customer, e.g. `email:ada@example.com` or `phone:+14155550100`."""

    # an X account is `xid:<user id>` once the X channel has seen it (handles change, ids
    # do not); `x:@handle` is what a person types

    kind: IdentityKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_sender(raw: str) -> Identity:
    """Read an email address, E.164 phone number or @handle into a normalised identity."""
    value = raw.strip()
    if _PHONE.match(value):
        return Identity(kind="phone", value=value)
    if _HANDLE.match(value):
        # X handles are case-insensitive; the lower-case form is the identity
        return Identity(kind="x", value=value.lower())
    if _EMAIL.match(value):
        # mailbox names are case-sensitive on paper, never in practice: one customer
        # writing as Ada@ and ada@ is one identity
        return Identity(kind="email", value=value.lower())
    raise ParseError(
        f"sender {value[:80]!r} is not an email address, E.164 phone number or @handle"
    )
