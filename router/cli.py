"""The `switchboard` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from router.settings import Settings, load
from schemas.errors import SwitchboardError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="switchboard",
        description="Omnichannel message router for customer support. "
        "Settings come from SB_* environment variables (see README).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="the edge: HTTP API, channel sources, and stream processors")
    run.add_argument("--http-port", type=int, help="listen here instead of SB_HTTP_PORT")
    worker = sub.add_parser("worker", help="stream processors only (health and metrics on HTTP)")
    worker.add_argument("--http-port", type=int, help="health/metrics port (0: any free port)")

    stack = sub.add_parser("stack", help="the local Kafka, Redis and IMAP under .local/")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--with-imap", action="store_true", help="also start Dovecot IMAP")

    sub.add_parser("export-schemas", help="write JSON Schema of every topic to schemas/json/")

    policy = sub.add_parser("policy", help="work with a routing policy file")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_sub.add_parser("check", help="validate a policy file and summarise it")
    check.add_argument("file", help="policy YAML, e.g. deploy/policy.example.yaml")

    explain = sub.add_parser(
        "explain", help="show the normalised message and decisions; no Kafka or Redis",
        description="Reads messages in a channel's native form and prints what Switchboard "
        "makes of them. One file: indented JSON, non-zero exit when refused. Several files: "
        "one JSON line per file, {\"file\", \"error\"} for refused ones, exit 0.")
    explain.add_argument("--channel", required=True, help="channel name, e.g. api or email")
    explain.add_argument("files", nargs="+", metavar="FILE", help="input file; - for stdin")
    explain.add_argument("--policy", help="policy file (default: SB_POLICY_FILE or the example)")

    publish = sub.add_parser("publish", help="put a test message on sb.inbound.v1")
    publish.add_argument("file", nargs="?", help="API-channel JSON body; - for stdin")
    publish.add_argument("--sender", help="email address, +E.164 phone number or @handle")
    publish.add_argument("--text", help="message text")
    publish.add_argument("--subject")

    tail = sub.add_parser("tail", help="print a topic's events as JSON lines")
    tail.add_argument("topic", help="routed, inbound, deadletter, outbound, delivery")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--count", type=int, help="stop after this many events")
    tail.add_argument("--timeout", type=float, help="stop after this many seconds")
    return p


def _explain(args: argparse.Namespace) -> int:
    from connectors.registry import get
    from processors.policy import load_policy
    from router.explain import explain_paths, render

    get(args.channel)  # an unknown channel fails before any input is read
    settings = load()
    policy = load_policy(args.policy or settings.policy_path)
    results = explain_paths(args.channel, args.files, sys.stdin.buffer.read, settings.thread_rules,
                            policy)
    if len(args.files) == 1:
        result = next(results)
        if "error" in result:
            print(f"switchboard explain: {result['file']}: {result['error']}", file=sys.stderr)
            return 1
        print(render(result, pretty=True))
        return 0
    for result in results:
        sys.stdout.write(render(result, pretty=False) + "\n")
    return 0


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    from router.publish import publish

    if args.file:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    elif args.sender and args.text:
        body = {"sender": args.sender, "text": args.text, "subject": args.subject}
        raw = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
    else:
        raise SwitchboardError("give a FILE, or --sender and --text")
    message = publish(settings, raw)
    print(json.dumps({"event_id": message.event_id, "thread_key": message.thread_key}))
    return 0


def _stack(settings: Settings, args: argparse.Namespace) -> int:
    from router import stack

    services = ("kafka", "redis", "imap") if args.with_imap else ("kafka", "redis")
    if args.action == "up":
        statuses = stack.up(settings, services)
    elif args.action == "down":
        statuses = stack.down(settings)
    else:
        statuses = stack.status(settings)
    for s in statuses:
        state = f"running pid={s.pid}" if s.running else "stopped"
        print(f"{s.name:<6} {state:<18} {s.address:<22} {s.detail}")
    # status fails only for what `up` starts by default; IMAP is opt-in
    needed = [s for s in statuses if s.name in stack.DEFAULT_SERVICES or args.with_imap]
    return 0 if args.action != "status" or all(s.running for s in needed) else 3


def _policy(args: argparse.Namespace) -> int:
    from processors.policy import check

    for line in check(args.file):
        print(line)
    return 0


def _export_schemas(args: argparse.Namespace) -> int:
    from schemas.export import write

    for path in write():
        print(path)
    return 0


def _with_settings(args: argparse.Namespace) -> int:
    overrides = {"http_port": args.http_port} if getattr(args, "http_port", None) is not None else {}
    settings = load(**overrides)
    if args.command in ("run", "worker"):
        from router.service import run_worker

        run_worker(settings, edge=args.command == "run")
        return 0
    if args.command == "stack":
        return _stack(settings, args)
    if args.command == "publish":
        return _publish(settings, args)
    from router.tail import run

    run(settings, args.topic, from_beginning=args.from_beginning, count=args.count,
        timeout=args.timeout)
    return 0


_OFFLINE = {"explain": _explain, "policy": _policy, "export-schemas": _export_schemas}


def _dispatch(args: argparse.Namespace) -> int:
    return _OFFLINE.get(args.command, _with_settings)(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors print one line and exit non-zero, never a traceback."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SwitchboardError as e:
        print(f"switchboard {args.command}: {e}", file=sys.stderr)
        return 2
    except (KeyError, OSError, msgspec.MsgspecError) as e:
        print(f"switchboard {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
