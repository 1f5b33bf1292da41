"""Offline harness: the brain's work per message without Kafka or Redis, in microseconds.

Decodes the bench workload's messages as the brain receives them, decides each with
`route.decide` under the example policy against facts shaped like a returning
customer's (history lines, recent conversations), and encodes what it would produce.
A regression in the decision path shows here without a broker: `python -m bench.brain`.
Every run decides at the same instant (`--at`, by default a Wednesday morning with the
example policy's teams open): business hours change which paths run, so a run at night
and one at noon would not compare.

CPU time still moves with the machine (a shared two-core host swung 40% between minutes).
`--instructions` counts the instructions a message instead, under valgrind: the same on
every run of the same code on any x86-64 host, so a change of a few percent shows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.workload import Workload
from processors import compiled
from processors.brain import route
from processors.brain.memo import Memo
from processors.brain.stage import acknowledgement_message
from processors.brain.thread import ThreadRules
from processors.intake.stage import identified_message
from processors.policy.load import load_policy
from processors.policy.model import Policy
from processors.stores.history import ConversationSummary
from router.vocabulary import VOCABULARY
from schemas import Decision, HistoryEntry, InboundMessage, decode, encode
from schemas.identified import CustomerProfile, IdentifiedMessage

__all__ = ["instructions", "main", "measure"]

# a Wednesday, 11:00 in the example policy's Berlin teams: open, as most of a day's traffic finds them
AT = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY = ROOT / "deploy" / "policy.example.yaml"
RULES = ThreadRules(token_key=b"bench-offline-key")
FIRST_SEEN = Decision(stage="identify", outcome="known", reasons=("bench",))


def _facts(now: datetime, lines: int) -> route.Facts:
    """A returning customer: `lines` of history and two recent conversations."""
    history = tuple(HistoryEntry(at=now - timedelta(hours=i), channel="email", direction="in",
                                 conversation_id="con_bench0000000000000001", summary=f"earlier message {i}")
                    for i in range(lines))
    recent = (ConversationSummary(conversation_id="con_bench0000000000000001", queue="general",
                                  status="resolved", last_at=now - timedelta(days=2)),
              ConversationSummary(conversation_id="con_bench0000000000000002", queue="billing",
                                  status="open", last_at=now - timedelta(hours=3)))
    return route.Facts(profile=CustomerProfile(customer_id="cus_bench", tier="premium", name="Ada"),
                       history=history, recent=recent, backlog={"general": 12, "billing": 3})


def _outputs(outcome: route.Outcome) -> list[bytes]:
    """What the brain produces for one outcome: the routed record and any acknowledgement."""
    out = [encode(outcome.routed)]
    if outcome.ack is not None:
        out.append(encode(acknowledgement_message(outcome.routed, outcome.ack.text)))
    return out


def _timed(n: int, step: Callable[[int], object], repeats: int = 5) -> float:
    """CPU time, the best of `repeats` passes: other processes on a shared machine only add to it."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for i in range(n):
            step(i)
        best = min(best, time.process_time() - started)
    return best / n * 1e6


@dataclass(frozen=True)
class _Work:
    """One run's inputs, decided once so the memo is warm, as in a worker that has run a while."""

    policy: Policy
    facts: route.Facts
    now: datetime
    memo: Memo
    identified: list[bytes]
    decoded: list[IdentifiedMessage]
    outcomes: list[route.Outcome]

    def steps(self) -> dict[str, Callable[[int], object]]:
        """The brain's three steps for message `i`, by name: what is timed, and what is counted."""
        return {
            "decode": lambda i: decode(self.identified[i], IdentifiedMessage),
            "decide": lambda i: route.decide(self.decoded[i], self.facts, self.policy, RULES, self.now,
                                             memo=self.memo),
            "encode": lambda i: _outputs(self.outcomes[i]),
        }


def _work(messages: int, history: int, at: datetime) -> _Work:
    policy = load_policy(EXAMPLE_POLICY, VOCABULARY)
    # messages arrive in the instant before they are decided, as in a batch
    work = Workload("offline", clock=lambda: at)
    inbound = [decode(work.next()[1], InboundMessage) for _ in range(messages)]
    identified = [encode(identified_message(m, "cus_bench", "bench", FIRST_SEEN, at=at)) for m in inbound]
    decoded = [decode(v, IdentifiedMessage) for v in identified]
    memo = Memo(lambda: at)  # the brain's: one per worker, across batches
    facts = _facts(at, history)
    outcomes = [route.decide(m, facts, policy, RULES, at, memo=memo) for m in decoded]
    return _Work(policy, facts, at, memo, identified, decoded, outcomes)


def measure(messages: int, history: int, at: datetime = AT) -> dict[str, float]:
    """Microseconds a message for each step of the brain's pure work, and their sum."""
    w = _work(messages, history, at)
    steps = {name: _timed(messages, step) for name, step in w.steps().items()}
    sizes = [len(encode(o.routed)) for o in w.outcomes]
    return {**{k: round(v, 1) for k, v in steps.items()}, "total": round(sum(steps.values()), 1),
            "routed_bytes": round(sum(sizes) / len(sizes))}


def _passes(messages: int, history: int, at: datetime, passes: int) -> None:
    """Every step for every message, `passes` times: what `instructions` counts."""
    steps = _work(messages, history, at).steps().values()
    for _ in range(passes):
        for i in range(messages):
            for step in steps:
                step(i)


_REFS = re.compile(rb"I\s+refs:\s+([\d,]+)")


def instructions(messages: int, history: int, at: datetime = AT) -> int:
    """Instructions a message for all three steps, counted by valgrind (x86-64), start-up excluded.

    Two runs, of one pass and of two over the same messages: their difference is one
    warm pass, without the imports and the set-up both share.
    """
    counts = []
    for passes in (1, 2):
        run = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
             sys.executable, "-m", "bench.brain", "--passes", str(passes), "--messages", str(messages),
             "--history", str(history), "--at", at.isoformat()],
            # str hashes are seeded per process: a fixed seed makes dict and set work repeat
            env=os.environ | {"PYTHONHASHSEED": "0"}, cwd=ROOT, capture_output=True, check=True)
        found = _REFS.search(run.stderr)
        if found is None:
            raise SystemExit(f"valgrind gave no count: {run.stderr[-500:].decode(errors='replace')}")
        counts.append(int(found.group(1).replace(b",", b"")))
    return round((counts[1] - counts[0]) / messages)


def main() -> None:
    """Command-line entry: `python -m bench.brain`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--history", type=int, default=10, help="history lines of the customer")
    parser.add_argument("--at", type=datetime.fromisoformat, default=AT,
                        help=f"the instant messages arrive and are decided (default {AT.isoformat()})")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions a message under valgrind instead of timing (2-3 min)")
    parser.add_argument("--passes", type=int, help=argparse.SUPPRESS)  # the counted child's work
    args = parser.parse_args()
    if (why := compiled.complaint()) is not None:  # it would measure old code
        parser.error(why)
    if args.at.tzinfo is None:
        parser.error("--at needs a UTC offset, e.g. 2026-12-09T10:00:00+00:00")
    # how many of the decision path's modules run compiled (docs/decisions/0023): 0 is pure Python
    built = len(compiled.loaded())
    if args.passes is not None:
        _passes(args.messages, args.history, args.at, args.passes)
        return
    if args.instructions:
        if shutil.which("valgrind") is None:
            parser.error("--instructions needs valgrind (`make setup` installs it)")
        count = instructions(args.messages, args.history, args.at)
        print(f"  instructions: {count}")
        print(json.dumps({"instructions": count, "compiled": built}))
        return
    result = {**measure(args.messages, args.history, args.at), "compiled": built}
    for step, value in result.items():
        print(f"{step:>14}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
