"""One run of the suite: its own stack and processes, then each scenario in turn, then counts.

Processes: the edge (`switchboard run`: HTTP API, the mailbox's IMAP source, and the
intake, brain and dispatch stages), a worker with the same stages, and a worker with
the send stage alone, all on the example policy (always open) with the agents' webhook
pointed at the suite's receiver. A scenario starts the load, waits until something is
routed, injects its faults, stops the load, and waits (with a deadline) until every
message it took is routed and every reply has a receipt.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.faults.count import Counts, Received, Window, count
from bench.faults.faults import Durations, Fault, Rig, Scenario, until, wait_recovered
from bench.faults.journal import Journal
from bench.faults.load import PASSWORD, USER, Item, Load, Rates
from bench.faults.processes import Process, Supervisor
from bench.faults.sinks import SmtpSink
from bench.faults.stack import OwnStack
from bench.faults.trace import trace_lost
from router.settings import Settings
from tests.policies import example_policy
from tests.receivers.webhook import WebhookReceiver

__all__ = ["Plan", "run_suite"]

TOKEN = "faults-api-token"
REPLY_KEY = "faults-reply-token-key-not-secret"
HOOK_SECRET = "faults-webhook-secret"
POLL_SECONDS = 0.2
STAGES = {"edge": "intake,brain,dispatch", "worker": "intake,brain,dispatch", "sender": "send"}


@dataclass(frozen=True)
class Plan:
    """What to run: the scenarios with their fault counts, durations, rates, deadlines."""

    scenarios: list[tuple[Scenario, int]]
    durations: Durations
    rates: Rates
    drain_seconds: float
    log_dir: Path
    kafka_libs: Path
    seed: int = 10


@dataclass
class Outcome:
    """Every scenario's counts, and how the run went."""

    rows: list[Counts] = field(default_factory=list)
    seconds: float = 0.0
    exit_codes: dict[str, int | None] = field(default_factory=dict)


def _policy(directory: Path, hook_url: str) -> Path:
    """The example policy, always open, every team tool the suite's webhook, no overflow."""
    return example_policy(directory, {
        "url: http://127.0.0.1:18090/switchboard": f"url: {hook_url}",
        "url: http://127.0.0.1:18091/page": f"url: {hook_url}",
        "destinations: [helpdesk-webhook, slack-support]": "destinations: [helpdesk-webhook]",
        # the load leaves every conversation open: keep them all in one queue
        "overflow: {above: 200, to: escalations}": "overflow: {above: 1000000, to: escalations}",
    })


def _env(settings: Settings, folder: str, smtp_port: int, policy: Path) -> dict[str, str]:
    email = {
        "accounts": [{"name": "support", "host": "127.0.0.1", "port": settings.imap_port,
                      "username": USER, "password": PASSWORD, "mailbox": folder,
                      "tls": "none", "timeout": 10}],
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none",
                 "from_address": "support@example.com", "from_name": "Example Support",
                 "message_id_domain": "support.example.com", "timeout": 10},
    }
    return {
        "SB_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "SB_REDIS_URL": settings.redis_dsn,
        "SB_STATE_DIR": str(settings.state_dir), "SB_IMAP_PORT": str(settings.imap_port),
        "SB_LMTP_PORT": str(settings.lmtp_port), "SB_TOPIC_PREFIX": settings.topic_prefix,
        "SB_APP_ID": settings.app_id, "SB_API_TOKENS": json.dumps([TOKEN]),
        "SB_REPLY_TOKEN_KEY": REPLY_KEY, "SB_POLICY_FILE": str(policy),
        "SB_EMAIL": json.dumps(email), "SB_WEBHOOK_SECRET": HOOK_SECRET,
        "SB_PAGER_SECRET": HOOK_SECRET, "SB_LOG_LEVEL": "INFO",
        # a dead worker's partitions move after 6 s, the least the settings allow (default 10 s)
        "SB_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
    }


def _create_folder(settings: Settings, folder: str) -> None:
    conn = imaplib.IMAP4("127.0.0.1", settings.imap_port, timeout=30)
    try:
        conn.login(USER, PASSWORD)
        typ, data = conn.create(f'"{folder}"')
        if typ != "OK":
            raise RuntimeError(f"cannot create IMAP folder {folder}: {data!r}")
    finally:
        conn.logout()



def _done(rig: Rig, item: Item) -> bool:
    if item.accepted_at is None:
        return True
    if item.kind == "reply":
        return item.key in rig.journal.receipts
    return item.key in rig.journal.routed


async def _trace(settings: Settings, rig: Rig, load: Load, rows: list[Counts]) -> None:
    """Add to each row with lost messages where each of them stopped (see trace.py)."""
    lost = {i.key: i.scenario for i in load.ledger.items
            if i.accepted_at is not None and i.kind != "reply" and i.key not in rig.journal.routed}
    if not lost:
        return
    traced = await trace_lost(settings, set(lost))
    for row in rows:
        lines = [f"{key}: {'; '.join(where) or 'on no topic'}"
                 for key, where in traced.items() if lost[key] == row.scenario]
        if lines:
            row.examples["lost_trace"] = lines


def _settled(rig: Rig, run_prefix: str) -> bool:
    """Every reply on the outbound topic has a receipt; every routed message reached its team."""
    journal = rig.journal
    if any(reply not in journal.receipts for reply in list(journal.outbound)):
        return False
    seen = Received.of(rig)
    return all(seen.handed_at(event) is not None for native, records in list(journal.routed.items())
               if native.startswith(run_prefix) for _, _, event in records)


async def _scenario(rig: Rig, load: Load, scenario: Scenario, faults_wanted: int,
                    drain_seconds: float) -> list[Fault]:
    began = time.time()
    await load.start(scenario.name)
    print(f"[{time.strftime('%H:%M:%S')}] {scenario.name}: {faults_wanted} x {scenario.title}",
          flush=True)
    await until(lambda: any(t >= began for t, _ in rig.journal.routed_at[-50:]), 120)
    faults = []
    for n in range(faults_wanted):
        fault = await scenario.inject(rig, n)
        faults.append(fault)
        recovered = await wait_recovered(rig, scenario.signal, fault.ended)
        again = "never" if recovered is None else f"{recovered - fault.ended:.1f}s"
        print(f"  {fault.note}: {fault.ended - fault.began:.1f}s, {scenario.signal} again after {again}",
              flush=True)
    await load.stop()
    items = load.ledger.of(scenario.name)
    drained = await until(lambda: all(_done(rig, i) for i in items), drain_seconds)
    if not drained:
        print(f"  not drained within {drain_seconds:g}s", flush=True)
    return faults


async def run_suite(plan: Plan) -> Outcome:
    """Start everything, run the plan's scenarios, count, and tear it all down."""
    outcome, started = Outcome(), time.monotonic()
    run = uuid.uuid4().hex[:6]
    stack = OwnStack.create(plan.kafka_libs)
    work = Path(tempfile.mkdtemp(prefix="sb-faults-run-"))
    smtp, webhook = SmtpSink(), WebhookReceiver(HOOK_SECRET.encode())
    supervisor: Supervisor | None = None
    journal: Journal | None = None
    try:
        print(f"stack under {stack.state}; logs in {plan.log_dir}", flush=True)
        await asyncio.to_thread(stack.up)
        settings = stack.settings.model_copy(update={"topic_prefix": f"fx{run}-",
                                                     "app_id": f"fx{run}-sb"})
        folder = f"faults-{run}"
        await asyncio.to_thread(_create_folder, settings, folder)
        smtp.start()
        await webhook.start()
        env = _env(settings, folder, smtp.port, _policy(work, webhook.url))
        plan.log_dir.mkdir(parents=True, exist_ok=True)
        supervisor = Supervisor([
            Process(role, "run" if role == "edge" else "worker", {**env, "SB_STAGES": stages},
                    plan.log_dir) for role, stages in STAGES.items()])
        await supervisor.start()
        journal = Journal(settings)
        await journal.start()
        rig = Rig(stack, supervisor, smtp, webhook, journal, plan.durations, random.Random(plan.seed),
                  time.time() - time.monotonic())
        load = Load(settings, journal, run=run, edge_url=supervisor["edge"].url, token=TOKEN,
                    folder=folder, rates=plan.rates, give_up=plan.drain_seconds)
        print(f"ready after {time.monotonic() - started:.0f}s", flush=True)
        ran: list[tuple[Scenario, float, list[Fault]]] = []
        for scenario, wanted in plan.scenarios:
            began = time.time()
            ran.append((scenario, began, await _scenario(rig, load, scenario, wanted, plan.drain_seconds)))
        # the last scenario's after-effects (a mailbox read anew) get their deadline too
        if not await until(lambda: _settled(rig, f"fx{run}-"), plan.drain_seconds):
            print(f"  replies or handoffs still open after {plan.drain_seconds:g}s", flush=True)
        ends = [began for _, began, _ in ran[1:]] + [time.time()]
        outcome.rows = [count(rig, scenario, Window(began, end), faults=faults, ledger=load.ledger,
                              run_prefix=f"fx{run}-")
                        for (scenario, began, faults), end in zip(ran, ends, strict=True)]
        await _trace(settings, rig, load, outcome.rows)
    finally:
        if journal is not None:
            await journal.stop()
        if supervisor is not None:
            outcome.exit_codes = await supervisor.stop()
        await webhook.stop()
        smtp.stop()
        await asyncio.to_thread(stack.close)
        shutil.rmtree(work, ignore_errors=True)
        outcome.seconds = time.monotonic() - started
    return outcome
