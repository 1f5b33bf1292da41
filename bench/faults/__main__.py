"""`python -m bench.faults`: the fault suite of issue #10; exits 1 naming any must-be-zero count.

Counts per scenario: inbound lost (an accepted API message or filed mail never routed),
duplicate conversations (one message given two), replies sent twice (one reply id
reaching the SMTP sink twice), crashes (a process exit the suite did not cause) — all
must be zero, except doubles after Redis lost its data (decision 0003) —, and, reported:
uncertain and failed receipts, re-routed records, replies without a receipt, messages
without a handoff, and the time to recover (first sign after each fault's end, and until
everything taken before it was done; the worst of the scenario's faults).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import subprocess
import sys
import time
from pathlib import Path

from bench.faults.faults import SCENARIOS, Durations
from bench.faults.load import Rates
from bench.faults.report import table, write_json
from bench.faults.stack import KAFKA_LIBS
from bench.faults.suite import Plan, run_suite
from router.settings import ROOT

__all__ = ["main"]

QUICK = Durations(gap=(1, 3), kafka=5, redis=2, imap=6, smtp=6, webhook=20, kill_gap=2, recover=60)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2-3 faults each, short outages (< 4 min)")
    p.add_argument("--only", help="comma-separated scenarios to run: "
                   + ", ".join(s.name for s in SCENARIOS))
    p.add_argument("--count", action="append", default=[], metavar="NAME=N",
                   help="faults of one scenario (repeatable)")
    p.add_argument("--json", type=Path, default=ROOT / ".local" / "faults" / "results.json",
                   help="where to write the results (default .local/faults/results.json)")
    p.add_argument("--logs", type=Path, help="the processes' logs (default: a new dir under /tmp)")
    p.add_argument("--api-rate", type=float, default=15.0, help="API messages per second")
    p.add_argument("--mail-rate", type=float, default=5.0, help="mails filed per second")
    p.add_argument("--reply-rate", type=float, default=4.0, help="agents' replies per second")
    p.add_argument("--seed", type=int, default=10, help="random moments of the faults")
    p.add_argument("--kafka-libs", type=Path, default=KAFKA_LIBS,
                   help="Kafka's jars (default .local/kafka/libs; another checkout's will do)")
    return p


def _plan(args: argparse.Namespace) -> Plan:
    wanted = {s.name for s in SCENARIOS} if not args.only else set(args.only.split(","))
    unknown = wanted - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario: {', '.join(sorted(unknown))}")
    counts = {}
    for entry in args.count:
        name, _, n = entry.partition("=")
        if name not in wanted or not n.isdigit():
            raise SystemExit(f"--count {entry}: expected NAME=N with a scenario being run")
        counts[name] = int(n)
    scenarios = [(s, counts.get(s.name, s.quick if args.quick else s.count))
                 for s in SCENARIOS if s.name in wanted]
    logs = args.logs or Path(f"/tmp/sb-faults-logs-{time.strftime('%Y%m%d-%H%M%S')}")
    return Plan(scenarios, QUICK if args.quick else Durations(),
                Rates(args.api_rate, args.mail_rate, args.reply_rate),
                drain_seconds=60 if args.quick else 120, log_dir=logs, kafka_libs=args.kafka_libs,
                seed=args.seed)


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or "unknown"


def main() -> None:
    """Run the suite, print the table, write the JSON; exit 1 when a must-be-zero count is not."""
    args = _parser().parse_args()
    # the suite's own Kafka clients retry through the outages it makes: their complaints are noise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    plan = _plan(args)
    began = datetime.datetime.now(datetime.UTC)
    outcome = asyncio.run(run_suite(plan))
    print()
    print(table(outcome.rows))
    print("! a must-be-zero count   * doubles after Redis lost its data: reported, by design")
    print(f"{outcome.seconds:.0f}s; processes stopped with {outcome.exit_codes}; logs in {plan.log_dir}")
    meta = {"date": began.strftime("%Y-%m-%d %H:%M UTC"), "commit": _commit(), "quick": args.quick,
            "seconds": round(outcome.seconds), "rates": vars(plan.rates),
            "durations": vars(plan.durations), "exit_codes": outcome.exit_codes,
            "table": table(outcome.rows, markdown=True)}
    write_json(args.json, meta, outcome.rows)
    print(f"results in {args.json}")
    failed = [f"{row.scenario}: {name}" for row in outcome.rows for name in row.failures()]
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
