"""`python -m bench.day`: a simulated support day (and an understaffed one) on the real stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from bench.day.report import aggregate, aggregate_table, table
from bench.day.run import DayOptions, DayResult, run_day

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The command line of `bench.day` and `switchboard simulate`."""
    p = argparse.ArgumentParser(prog="switchboard simulate", description=__doc__)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--seeds", help="several days, e.g. 1,2,3: per-seed and aggregate (mean, min) scorecards")
    p.add_argument("--per-day", type=float, default=200, help="first contacts in the whole day")
    p.add_argument("--busier", type=float, default=1.0,
                   help="a busier (or quieter) day: first contacts times this, same agents")
    p.add_argument("--speed", type=float, default=100, help="simulated seconds per real second")
    p.add_argument("--hours", default="0-24", help="local hours simulated, e.g. 8-12")
    p.add_argument("--staffing", type=float, default=1.0, help="share of the nominal agents")
    p.add_argument("--compare", action="store_true", help="run nominal and half staffing, side by side")
    p.add_argument("--policy", type=Path, help="the policy file (default: the example)")
    p.add_argument("--out", type=Path, help="where scorecards go (default .local/day)")
    p.add_argument(
        "--rescore",
        type=Path,
        nargs="+",
        metavar="SCORECARD.json",
        help="score recorded days again from their topics, run nothing",
    )
    return p


def _options(args: argparse.Namespace, staffing: float, seed: int) -> DayOptions:
    begin, _, end = args.hours.partition("-")
    extra = {k: v for k, v in (("policy", args.policy), ("out", args.out)) if v is not None}
    return DayOptions(
        seed=seed,
        per_day=args.per_day * args.busier,
        speed=args.speed,
        hours=range(int(begin), int(end)),
        staffing=staffing,
        **extra,
    )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the day's finally blocks stop its router and drop its folder


def main(argv: list[str] | None = None) -> int:
    """Run the day(s), print the scorecard table and the failures; 0 when it ran."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    if args.rescore:
        from bench.day.whatif import rescore

        again = [rescore(path) for path in args.rescore]
        print(
            table(
                [f"staffing {r['options']['staffing']:g}" for r in again],
                [r["scorecard"]["numbers"] for r in again],
            )
        )
        for day in again:
            failures = day["scorecard"]["failures"]
            print(f"\nstaffing {day['options']['staffing']:g}:", *(f"\n  - {f}" for f in failures))
        return 0
    staffings = (1.0, 0.5) if args.compare else (args.staffing,)
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    results: list[DayResult] = []
    for seed in seeds:
        for staffing in staffings:
            results.append(asyncio.run(run_day(_options(args, staffing, seed))))
    titles = [f"seed {r.sim['seed']}, staffing {r.sim['staffing']:g}" for r in results]
    print(table(titles, [r.scorecard.numbers for r in results]))
    for title, r in zip(titles, results, strict=True):
        print(
            f"\n{title}: {r.start:%a %d %b %H:%M} to {r.end:%a %H:%M} simulated in {r.real_seconds:.0f} s; "
            f"{json.dumps(r.sim)}"
        )
        for failure in r.scorecard.failures:
            print(f"  - {failure}")
    if len(seeds) > 1:
        _aggregate(args, staffings, results)
    return 0


def _aggregate(args: argparse.Namespace, staffings: tuple[float, ...], results: list[DayResult]) -> None:
    """Mean and minimum over the seeds, per staffing; printed and saved beside the scorecards."""
    groups = [[r.scorecard.numbers for r in results if r.sim["staffing"] == s] for s in staffings]
    found = [aggregate(g) for g in groups]
    titles = [f"staffing {s:g}, {len(g)} seeds" for s, g in zip(staffings, groups, strict=True)]
    print("\n" + aggregate_table(titles, found))
    out = (args.out or DayOptions().out) / f"aggregate-seeds-{args.seeds.replace(',', '-')}.json"
    out.write_text(json.dumps({"seeds": args.seeds, "busier": args.busier,
                               "by_staffing": dict(zip(titles, found, strict=True)),
                               "prefixes": [r.prefix for r in results]}, indent=2))
    print(f"aggregate saved to {out}")


if __name__ == "__main__":
    raise SystemExit(main())
