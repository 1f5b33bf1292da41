"""Identify: the customer and conversation ids a message belongs to.

Until identities are linked across channels (a later stage), a customer is one sender
identity, and the customer id is a stable hash of it.
"""

from __future__ import annotations

import hashlib

from schemas.identity import Identity

__all__ = ["customer_id_for"]


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def customer_id_for(sender: Identity) -> str:
    """The provisional customer id of one sender identity."""
    return f"cus_{_short_hash(str(sender))}"
