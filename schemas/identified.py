"""Customers: identified messages, identity links, and profiles.

Topics `sb.identified.v1` and `sb.identity.v1`; history lines live in `schemas.routed`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.identity import Identity
from schemas.inbound import InboundMessage
from schemas.probe import ProbeMark
from schemas.routed import Decision, HistoryEntry

__all__ = ["CustomerProfile", "HistoryEntry", "IdentifiedMessage", "IdentityLink"]


class IdentifiedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A deduplicated message and the customer it is from.

    Topic `sb.identified.v1`, keyed by `customer_id`: one customer's messages are ordered
    and their state is local to one worker from here on.
    """

    event_id: str
    customer_id: str
    message: InboundMessage
    identified_at: datetime
    decisions: tuple[Decision, ...]
    # set by intake only for a message carrying a verified probe marker (schemas/probe.py):
    # the brain reports its route on sb.probe.v1 and it goes no further
    probe: ProbeMark | None = None


class IdentityLink(msgspec.Struct, frozen=True, kw_only=True):
    """One identity joined to (or parted from) a customer, with the evidence and who did it.

    Topic `sb.identity.v1`, keyed by `customer_id`: the audit trail of every link. A
    `suggest` moves nothing: the customer stated the identity as theirs in a private
    message, and an agent links it (or not) through the customers API.
    """

    action: Literal["link", "unlink", "suggest"]
    identity: Identity
    customer_id: str
    # the customer the identity belonged to before this change, if any
    previous_customer_id: str | None
    evidence: str
    actor: str
    at: datetime
    event_id: str | None = None


class CustomerProfile(msgspec.Struct, frozen=True, kw_only=True):
    """Who the customer is to us: tier, name, and every identity linked to them."""

    customer_id: str
    tier: str | None = None
    name: str | None = None
    identities: tuple[Identity, ...] = ()
