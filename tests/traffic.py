"""A busy hour of customer traffic for end-to-end tests: customers, tiers, two channels, repeats.

Deterministic for a seed. Every customer has one email address; some write by email,
some through the API, some on both. Texts are unique per message (so history lines can
be matched back to messages), carry no billing words (so a customer's messages stay in
one conversation) and mix urgencies: plain questions, an outage, a hacked account,
an angry one. A share of messages is sent twice with the same native id.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.api.parse import parse as parse_api
from connectors.email.parse import parse_email
from schemas import InboundMessage, encode
from tests.integration.email.conftest import make_mail

PHRASES = (
    "where is my parcel, it should have arrived by now",
    "how do I change the delivery address of my order",
    "the app is not working since this morning",
    "my account was hacked, please lock it",
    "I am really angry, this is the worst service ever and I am very disappointed",
    "can you tell me when the shop opens again",
    "one more question about my order please",
)
TIERS = ("enterprise", "premium", "standard", None)  # None: not in the directory


@dataclass(frozen=True)
class Customer:
    """One customer: their address, the tier the directory gives them, the channels they use."""

    n: int
    address: str
    tier: str | None
    channels: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    """One message as planned: its channel, what carries it, and the event it becomes."""

    customer: Customer
    channel: str
    message: InboundMessage
    # the API body for POST /v1/messages; None for mail
    body: bytes | None = None


@dataclass
class Traffic:
    """The customers and their messages, each listed once; `repeats` are sent a second time."""

    customers: list[Customer]
    sent: list[Sent] = field(default_factory=list)
    repeats: list[Sent] = field(default_factory=list)

    def directory_csv(self) -> bytes:
        """The CSV that gives every customer in the directory their tier."""
        rows = [f"{c.address},{c.tier}" for c in self.customers if c.tier]
        return ("identity,tier\n" + "\n".join(rows) + "\n").encode()

    def by_event(self) -> dict[str, Sent]:
        """Every planned message by its event id."""
        return {s.message.event_id: s for s in self.sent}

    def records(self, channel: str | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for sb.inbound.v1 of every message then every repeat, as a connector keys them."""
        for s in [*self.sent, *self.repeats]:
            if channel is None or s.channel == channel:
                yield s.message.thread_key.encode(), encode(s.message)


def _mail(run: str, customer: Customer, k: int, text: str) -> Sent:
    raw = make_mail(f"Question {run}-{customer.n}", sender=customer.address, body=text,
                    message_id=f"<{run}-{customer.n}-{k}@mail.example.org>")
    message = parse_email(raw, account="support@example.com", received_at=datetime.now(UTC))
    return Sent(customer, "email", message)


def _api(run: str, customer: Customer, k: int, text: str) -> Sent:
    body = json.dumps({"sender": customer.address, "text": text, "message_id": f"{run}-{customer.n}-{k}",
                       "subject": f"Question {run}-{customer.n}"}).encode()
    return Sent(customer, "api", parse_api(body), body)


def busy_hour(run: str, customers: int = 100, seed: int = 4, repeat_every: int = 12) -> Traffic:
    """About four messages per customer, in a shuffled order, every `repeat_every`-th one twice."""
    rng = random.Random(seed)
    people = [Customer(n, f"{run}-c{n}@example.com", TIERS[n % len(TIERS)],
                       (("email",), ("api",), ("email", "api"))[n % 3]) for n in range(customers)]
    traffic = Traffic(people)
    for c in people:
        for k in range(rng.randint(2, 6)):
            text = f"{rng.choice(PHRASES)} (case {run} {c.n}/{k})"
            channel = c.channels[k % len(c.channels)]
            traffic.sent.append((_mail if channel == "email" else _api)(run, c, k, text))
    rng.shuffle(traffic.sent)
    traffic.repeats = traffic.sent[::repeat_every]
    return traffic
