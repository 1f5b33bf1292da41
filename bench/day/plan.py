"""The seeded plan of a day: who the customers are and what each of them will do.

Only the first contacts are fixed in time; the rest (chasing, answering our answers,
answering the follow-up, auto-replies and bounces) are dispositions the customer acts
on when the system gives them cause, so what they do depends on what Switchboard did.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from bench.day.curve import arrivals

__all__ = ["ANGRY", "SUPPORT_TEXT", "Contact", "Customer", "DayPlan", "Texts", "plan_day"]

SUPPORT_TEXT = (
    Path(__file__).resolve().parents[2]
    / "tests"
    / "fixtures"
    / "support-text"
    / "bitext-customer-support-6480.csv"
)
Tier = Literal["enterprise", "premium", "standard"]
Channel = Literal["email", "api", "x", "chat", "phone"]
TIERS: tuple[tuple[Tier, float], ...] = (("enterprise", 0.1), ("premium", 0.25), ("standard", 0.65))
# what an upset customer adds to their request
ANGRY = (
    "This is the third time I am asking and it is unacceptable.",
    "I am really angry, your service is terrible.",
    "Worst experience ever, nobody answers and I am furious.",
)
OUTAGE = "Your site is down and checkout is not working for us."


@dataclass(frozen=True)
class Texts:
    """Real customer requests and agents' answers (Bitext, CDLA-Sharing-1.0), by intent."""

    requests: dict[str, list[str]]
    answers: dict[str, list[str]]

    @classmethod
    def load(cls, path: Path = SUPPORT_TEXT) -> Texts:
        """Read the fixture."""
        requests: dict[str, list[str]] = {}
        answers: dict[str, list[str]] = {}
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                requests.setdefault(row["intent"], []).append(row["instruction"])
                answers.setdefault(row["intent"], []).append(row["response"])
        return cls(requests, answers)

    def answer(self, rng: random.Random, intent: str) -> str:
        """An agent's answer to a request of this intent (placeholders like {{Order Number}} cut)."""
        text = rng.choice(self.answers.get(intent) or ["We have looked into it and fixed it."])
        return text.replace("{{", "").replace("}}", "")[:1500]


@dataclass
class Customer:
    """One customer: tier, address, channels, and how they behave."""

    n: int
    name: str
    address: str
    tier: Tier
    channels: tuple[Channel, ...]
    out_of_office: bool = False  # their mail server answers our mail automatically
    dead_mailbox: bool = False  # our mail to them bounces (they write through the API)
    patience: timedelta = timedelta(hours=2)  # unanswered this long, they chase
    chases: bool = False
    answers_back: bool = False  # replies to our answer with one more question
    satisfied_after_resolve: bool = True
    x_id: str | None = None  # their X user id, when they write on X
    phone: str | None = None  # their number (E.164), when they call
    logged_in: bool = False  # the shop vouches for their address in the chat (identity hash)
    stays_in_chat: bool = True  # False: they leave the chat and read the answer by mail


@dataclass
class Contact:
    """A customer's first message of the day."""

    at: datetime
    customer: Customer
    channel: Channel
    intent: str
    text: str
    subject: str
    angry: bool = False
    n: int = 0


@dataclass
class DayPlan:
    """The day's customers and first contacts, in time order."""

    seed: int
    start: datetime
    end: datetime
    customers: list[Customer]
    contacts: list[Contact] = field(default_factory=list)

    def directory_csv(self, domain: str) -> bytes:
        """The customer directory import: identity, tier, name."""
        rows = [f"{c.address},{c.tier},{c.name}" for c in self.customers if c.tier != "standard"]
        # a caller is known by the number on file (a second customer record: the phone links none)
        rows += [f"{c.phone},{c.tier},{c.name}" for c in self.customers if c.phone and c.tier != "standard"]
        return ("identity,tier,name\n" + "\n".join(rows) + "\n").encode()


# email alone is the most common; one in eight writes on X first, one in eight opens the web chat
# (and gives an email address there), one in eight calls and leaves a voicemail
CHANNEL_MIXES: tuple[tuple[Channel, ...], ...] = (
    ("email",),
    ("email",),
    ("email", "api"),
    ("api", "email"),
    ("x", "email"),
    ("chat", "email"),
    ("phone", "email"),
    ("email",),
)
FIRST = (
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Femi",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lena",
    "Mo",
    "Nora",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tess",
    "Umar",
    "Vera",
    "Wen",
    "Yara",
    "Zoe",
)


def _tier(rng: random.Random) -> Tier:
    x, acc = rng.random(), 0.0
    for tier, share in TIERS:
        acc += share
        if x < acc:
            return tier
    return "standard"


def plan_day(
    seed: int,
    day: datetime,
    zone: ZoneInfo,
    *,
    per_day: float,
    run: str,
    texts: Texts,
    hours: range = range(24),
) -> DayPlan:
    """A reproducible day: the same seed gives the same customers, texts and arrival times."""
    rng = random.Random(seed)
    moments = arrivals(rng, day, per_day, zone, hours)
    intents = sorted(texts.requests)
    customers: list[Customer] = []
    contacts: list[Contact] = []
    numbers = f"+49151{sum(map(ord, run)) % 1000:03d}"  # callers' numbers, unique to the run
    for i, at in enumerate(moments):
        # a returning customer writes again some of the time (their history must travel)
        if customers and rng.random() < 0.1:
            who = rng.choice(customers)
        else:
            name = f"{rng.choice(FIRST)} {run[-4:]}{len(customers)}"
            dead = rng.random() < 0.03
            channels: tuple[Channel, ...] = ("api",) if dead else rng.choice(CHANNEL_MIXES)
            who = Customer(
                n=len(customers),
                name=name,
                address=f"c{len(customers)}.{run}@customers.example.org",
                tier=_tier(rng),
                channels=channels,
                out_of_office=rng.random() < 0.05,
                dead_mailbox=dead,
                patience=timedelta(minutes=rng.uniform(60, 240)),
                chases=rng.random() < 0.2,
                answers_back=rng.random() < 0.3,
                satisfied_after_resolve=rng.random() < 0.8,
                x_id=str(4_000_000_000 + len(customers)) if "x" in channels else None,
                phone=f"{numbers}{len(customers):05d}" if "phone" in channels else None,
                logged_in=rng.random() < 0.5,
                stays_in_chat=rng.random() < 0.7,
            )
            customers.append(who)
        intent = rng.choice(intents)
        text = rng.choice(texts.requests[intent])
        angry = intent == "complaint" or rng.random() < 0.12
        if angry:
            text = f"{rng.choice(ANGRY)} {text}"
        if rng.random() < 0.03:
            text = f"{OUTAGE} {text}"
        subject = text[:60].split(".")[0] or "Help"
        contacts.append(
            Contact(
                at=at,
                customer=who,
                channel=who.channels[0],
                intent=intent,
                text=text,
                subject=subject,
                angry=angry,
                n=i,
            )
        )
    start = day.astimezone(zone).replace(hour=hours.start, minute=0, second=0, microsecond=0)
    return DayPlan(
        seed=seed,
        start=start,
        end=start + timedelta(hours=len(hours)),
        customers=customers,
        contacts=contacts,
    )
