"""The `switchboard` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from router.cli import probe, retag
from router.http.integrations import SCOPES
from router.settings import Settings, load
from schemas.errors import SwitchboardError

__all__ = ["main"]


def _add_whatif(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    whatif = sub.add_parser(
        "whatif", help="replay recorded inbound messages under a new policy; no side effects",
        description="Judges the inbound messages recorded since a time under the policy in force "
        "(SB_POLICY_FILE) and under a new one, and compares queues, priorities and first-response "
        "times. Produces nothing, writes nothing, commits nothing; each message is judged as if new.")
    whatif.add_argument("--policy", required=True, metavar="NEW.yaml", help="the policy to compare")
    whatif.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d (default 24h)")
    whatif.add_argument("--limit", type=int, help="at most this many records")
    whatif.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    whatif.add_argument("--day", type=Path, metavar="SCORECARD.json",
                        help="replay a simulated day (`switchboard simulate`) under the new policy and "
                        "print both scorecards side by side")



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

    stack = sub.add_parser("stack", help="the local Kafka and Redis (and mail: IMAP, SMTP) under .local/")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--with-imap", action="store_true",
                       help="also start the mail system: Dovecot IMAP and the SMTP relay into it")

    sub.add_parser("export-schemas",
                   help="write JSON Schema of every topic to schemas/json/ and docs/openapi.json")

    token = sub.add_parser("token", help="integration tokens for the HTTP API")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    new = token_sub.add_parser("new", help="print a new token once, and its SB_INTEGRATIONS entry")
    new.add_argument("name", help="the integration's name, e.g. helpdesk")
    new.add_argument("--scope", action="append", required=True, choices=SCOPES, dest="scopes",
                     help="a scope it may use; repeat for more")

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

    _add_whatif(sub)
    sub.add_parser("simulate", help="a simulated support day on the local stack and its scorecard; "
                   "`switchboard simulate --help` for its options (bench/day)")

    digest = sub.add_parser(
        "digest", help="volumes, sentiment, repeats, breaches, held replies and follow-ups of a window",
        description="Summarises the routed, SLA, conversation and delivery events of a window: volumes "
        "by intent, queue and channel, the sentiment trend, repeat contacts, the top breach causes, "
        "replies the guard held and follow-up outcomes. Reads only; --publish also puts the digest "
        "on sb.insights.v1.")
    digest.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d (default 24h)")
    digest.add_argument("--format", choices=["text", "json", "csv"], default="text",
                        help="a readable report (default), one JSON document, or CSV rows")
    digest.add_argument("--publish", action="store_true", help="also put it on sb.insights.v1")

    desk = sub.add_parser(
        "desk", help="a local agents' desk: receive the router's webhooks and print them",
        description="Listens where deploy/policy.example.yaml delivers (helpdesk-webhook; pager-webhook "
        "when SB_PAGER_SECRET is set), checks each signature with SB_WEBHOOK_SECRET / SB_PAGER_SECRET "
        "and prints every delivery with curl lines to answer it. For development and demos.")
    desk.add_argument("--port", type=int, default=18090, help="helpdesk port (default 18090)")
    desk.add_argument("--pager-port", type=int, default=18091, help="pager port (default 18091)")
    desk.add_argument("--api-url", default="http://127.0.0.1:18080",
                      help="the router's HTTP API, for the curl lines")
    for recorded in (run, worker, desk):
        recorded.add_argument("--pid-file", type=Path, help="write this process's PID here (make run)")

    _local_commands(sub)
    probe.add_parser(sub)
    retag.add_parser(sub)
    tail = sub.add_parser("tail", help="print a topic's events as JSON lines")
    tail.add_argument("topic", help="routed, inbound, deadletter, outbound, delivery")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--count", type=int, help="stop after this many events")
    tail.add_argument("--timeout", type=float, help="stop after this many seconds")
    return p


def _local_commands(sub: Any) -> None:
    """The commands of a local desk: stop what `make run` started, send and read its mail."""
    stop = sub.add_parser("stop", help="stop the processes PID files name (what `--pid-file` wrote)",
                          description="Signals a process only while it is the one that wrote the file "
                          "(same PID, same start time); `make stop` uses it.")
    stop.add_argument("files", nargs="+", metavar="PIDFILE")
    mail = sub.add_parser("mail", help="send mail to support, or read a mailbox, on the local stack")
    mail_sub = mail.add_subparsers(dest="mail_command", required=True, metavar="ACTION")
    send = mail_sub.add_parser("send", help="mail support@example.com through the stack's SMTP server")
    send.add_argument("text", help="the message")
    send.add_argument("--from", dest="sender", default="ada@example.com", help="default ada@example.com")
    send.add_argument("--subject", default="Hello support")
    send.add_argument("--to", default="support@example.com")
    read = mail_sub.add_parser("read", help="print a mailbox of the stack's Dovecot (a customer's)")
    read.add_argument("address", help="e.g. ada@example.com")
    read.add_argument("--password", default="customer", help="customers' mailboxes: customer")


def _explain(args: argparse.Namespace) -> int:
    from connectors.registry import channel
    from processors.policy.load import load_policy
    from router.channels import running
    from router.cli.explain import explain_paths, render
    from router.vocabulary import vocabulary

    channel(args.channel)  # an unknown channel fails before any input is read
    settings = load()
    # acknowledgements as this deployment would plan them: only for customers its channels reach
    policy = load_policy(args.policy or settings.policy_path, vocabulary(running(settings)))
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
    from router.cli.publish import publish

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


def _whatif(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from processors.policy.load import load_policy
    from router.cli.whatif import as_json, parse_since, render, whatif
    from router.vocabulary import vocabulary

    if args.day is not None:
        from bench.day.whatif import replay

        load_policy(args.policy, vocabulary())  # a bad file fails before the day starts
        print(replay(args.day, Path(args.policy)))
        return 0
    since = parse_since(args.since)
    if args.limit is not None and args.limit < 1:
        raise SwitchboardError("--limit must be at least 1")
    # both policies are checked before Kafka is asked anything: a bad file fails at once
    new = load_policy(args.policy, vocabulary())
    old = load_policy(settings.policy_path, vocabulary())
    report = asyncio.run(whatif(settings, old, new, since, args.limit))
    print(json.dumps(as_json(report), indent=2) if args.json else render(report))
    return 0


def _digest(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    from datetime import UTC, datetime

    from router.cli.digest import digest, publish
    from router.cli.whatif import parse_since
    from router.insights.render import as_csv, as_json, as_text

    found = asyncio.run(digest(settings, parse_since(args.since), datetime.now(UTC)))
    if args.publish:
        asyncio.run(publish(settings, found))
    if args.format == "json":
        print(json.dumps(as_json(found), indent=2))
    else:
        sys.stdout.write(as_csv(found) if args.format == "csv" else as_text(found) + "\n")
    return 0


def _stack(settings: Settings, args: argparse.Namespace) -> int:
    from devtools import stack

    services = (*stack.DEFAULT_SERVICES, *(stack.MAIL_SERVICES if args.with_imap else ()))
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
    from processors.policy.load import check
    from router.vocabulary import vocabulary

    for line in check(args.file, vocabulary()):
        print(line)
    return 0


def _export_schemas(args: argparse.Namespace) -> int:
    from router.http.openapi import write as write_openapi
    from schemas.export import write

    for path in [*write(), write_openapi()]:
        print(path)
    return 0


def _desk(args: argparse.Namespace) -> int:
    import asyncio

    from devtools.desk import run

    asyncio.run(run(load(), port=args.port, pager_port=args.pager_port, api_url=args.api_url))
    return 0


def _token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from router.http.integrations import new_entry, new_token

    token = new_token()
    try:
        entry = new_entry(args.name, args.scopes, token)
    except ValidationError as e:
        raise SwitchboardError(f"bad integration: {e.errors()[0]['msg']}") from e
    print(token)
    print(entry)
    print("the token is shown only this once; add the JSON line to the SB_INTEGRATIONS list",
          file=sys.stderr)
    return 0


def _mail(settings: Settings, args: argparse.Namespace) -> int:
    from devtools import mail

    if args.mail_command == "send":
        sent = mail.send(settings, sender=args.sender, text=args.text, subject=args.subject, to=args.to)
        print(f"sent {sent} to {args.to}")
        return 0
    shown = 0
    for shown, block in enumerate(mail.read(settings, args.address, args.password), 1):
        print(f"── {shown} " + "─" * 60 + f"\n{block}")
    if not shown:
        print(f"{args.address}: no mail yet")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from router.pidfile import stop

    for file in args.files:
        print(stop(Path(file)))
    return 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from router.service import run_worker

    run_worker(settings, edge=args.command == "run")
    return 0


def _tail(settings: Settings, args: argparse.Namespace) -> int:
    from router.cli.tail import run

    run(settings, args.topic, from_beginning=args.from_beginning, count=args.count,
        timeout=args.timeout)
    return 0


_WITH_SETTINGS = {"run": _run, "worker": _run, "stack": _stack, "publish": _publish, "whatif": _whatif,
                  "mail": _mail, "probe": probe.run, "tail": _tail, "digest": _digest,
                  "redis": retag.run}


def _with_settings(args: argparse.Namespace) -> int:
    overrides = {"http_port": args.http_port} if getattr(args, "http_port", None) is not None else {}
    return _WITH_SETTINGS[args.command](load(**overrides), args)


_OFFLINE = {"explain": _explain, "policy": _policy, "export-schemas": _export_schemas, "token": _token,
            "desk": _desk, "stop": _stop}


def _dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "pid_file", None) is not None:
        from router.pidfile import record

        record(args.pid_file)  # first: `make stop` finds a process that is still starting
    return _OFFLINE.get(args.command, _with_settings)(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors print one line and exit non-zero, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:  # its own options, --help included, belong to bench/day
        from bench.day.__main__ import main as simulate

        return simulate(argv[1:])
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

