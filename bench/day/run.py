"""One simulated day on the real stack: the router as a real process on the simulated clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import msgspec

from bench.day.clock import SimClock
from bench.day.customers import Crowd
from bench.day.desk import Desk, Shift, Team
from bench.day.mail import SUPPORT, SUPPORT_PASSWORD, TEAM_DOMAIN, Folder, Sink, customer_mail
from bench.day.plan import DayPlan, Texts, plan_day
from bench.day.policy import EXAMPLE, day_policy
from bench.day.score import Recorded, Scorecard, score
from bench.day.slackdesk import SlackDesk
from bench.day.visitors import PUBLIC
from connectors.slack.routes import PATH as SLACK_EVENTS
from devtools.process import child_env, free_port, readyz, spawn
from devtools.process import stop as stop_process
from router.cli.whatif import read_window
from router.settings import ROOT, Settings
from schemas.codec import decode
from schemas.conversation import ConversationEvent
from schemas.handoff import HandoffReceipt
from schemas.outbound import DeliveryReceipt, OutboundMessage
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent
from schemas.topics import CONVERSATION, DELIVERY, HANDOFF, OUTBOUND, ROUTED, SLA
from tests.emulators.slack import SlackEmulator
from tests.emulators.twilio import OUR_NUMBER, TwilioEmulator
from tests.emulators.x import XEmulator
from tests.kafka_tools import wait_drained

__all__ = ["SHIFTS", "DayOptions", "DayResult", "last_weekday", "read_recorded", "run_day"]

ZONE = ZoneInfo("Europe/Berlin")
TOKEN = "day-token"
SHIFTS: dict[str, tuple[Shift, ...]] = {
    # the general team: a morning and an afternoon shift, thin over lunch, one person on call at night
    "general": (Shift(0, 8, 1), Shift(8, 12, 6), Shift(12, 13, 3), Shift(13, 18, 5), Shift(18, 24, 1)),
    "billing": (Shift(8, 18, 2),),
    "escalations": (Shift(0, 24, 1),),
}


@dataclass(frozen=True)
class DayOptions:
    """What day to simulate and how."""

    seed: int = 16
    per_day: float = 200
    speed: float = 100
    hours: range = range(24)
    tail_hours: float = 2.0
    staffing: float = 1.0
    policy: Path = EXAMPLE
    day: datetime | None = None  # the local day simulated (default: the next Monday)
    down: tuple[int, int] | None = (10, 11)  # local hours the helpdesk webhook is down
    out: Path = ROOT / ".local" / "day"


@dataclass
class DayResult:
    """The scorecard and how the day went."""

    scorecard: Scorecard
    prefix: str
    start: datetime
    end: datetime
    real_seconds: float
    sim: dict[str, Any] = field(default_factory=dict)


def last_weekday(now: datetime, weekday: int = 0) -> datetime:
    """The latest local midnight on `weekday` (Mon=0) at least two days before `now`.

    The day is simulated in the past: Dovecot stamps mail with its own (real) clock and
    keeps a given INTERNALDATE only when it is not in the future.
    """
    local = (now - timedelta(days=2)).astimezone(ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    return local - timedelta(days=(local.weekday() - weekday) % 7)


def scaled(shifts: tuple[Shift, ...], staffing: float) -> tuple[Shift, ...]:
    """Shifts with `staffing` times the agents; a shift that had someone keeps at least one."""
    return tuple(Shift(s.begin, s.end, max(1, int(s.agents * staffing)) if s.agents else 0) for s in shifts)


async def read_recorded(settings: Settings, timeout: float = 60) -> Recorded:
    """Every event of the day's topics."""
    since = datetime(2000, 1, 1, tzinfo=UTC)

    async def values(spec: Any) -> list[bytes]:
        _, found = await read_window(settings, since, None, timeout, spec=spec)
        return [v for v in found if v]

    rec = Recorded()
    rec.routed = [decode(v, RoutedConversation) for v in await values(ROUTED)]
    rec.sla = [decode(v, SlaEvent) for v in await values(SLA)]
    rec.lifecycle = [decode(v, ConversationEvent) for v in await values(CONVERSATION)]
    rec.outbound = [decode(v, OutboundMessage) for v in await values(OUTBOUND)]
    rec.receipts = [decode(v, DeliveryReceipt) for v in await values(DELIVERY)]
    rec.handoffs = [decode(v, HandoffReceipt) for v in await values(HANDOFF)]
    return rec


class _Router:
    """`switchboard run` as a real process, started on the simulated clock."""

    def __init__(self, env: dict[str, str], clock: SimClock, log: Path, port: int) -> None:
        self.env, self.clock, self.log, self.port = env, clock, log, port
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 120) -> None:
        """Start it and wait until /readyz says ready."""
        own = {**self.env, "SB_HTTP_PORT": str(self.port)}
        self.proc = spawn("run", child_env(own | self.clock.faketime_env(pythonpath=str(ROOT))), self.log)
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(readyz, self.port) != 200:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchboard run exited, see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"switchboard run never ready, see {self.log}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        """Stop it (killed if it does not go within a minute)."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                stop_process(self.proc)


def _router_env(
    base: Settings,
    *,
    prefix: str,
    folder: str,
    smtp_port: int,
    policy: Path,
    secrets: dict[str, bytes],
    out: Path,
) -> dict[str, str]:
    """The settings of the day's `switchboard run`: its own topics, folder, SMTP sink and desk."""
    email = {
        "accounts": [
            {
                "name": "support",
                "host": "127.0.0.1",
                "port": base.imap_port,
                "username": SUPPORT,
                "password": SUPPORT_PASSWORD,
                "mailbox": folder,
                "tls": "none",
                "timeout": 10,
            }
        ],
        "smtp": {**_smtp(smtp_port), "max_attempts": 3},
        "token_key": f"{prefix}token-key",
    }
    return {
        "SB_TOPIC_PREFIX": prefix,
        "SB_APP_ID": f"{prefix}sb",
        "SB_API_TOKENS": json.dumps([TOKEN]),
        "SB_POLICY_FILE": str(policy),
        "SB_EMAIL": json.dumps(email),
        "SB_OUR_DOMAINS": TEAM_DOMAIN,
        "SB_REPLY_TOKEN_KEY": f"{prefix}reply-key",
        "SB_STATE_DIR": str(out / "state"),
        "SB_WEBHOOK_SECRET": secrets["helpdesk-webhook"].decode(),
        "SB_PAGER_SECRET": secrets["pager-webhook"].decode(),
        # a tick is two simulated minutes at speed 120: SLA notices fire within that of their time
        "SB_SLA_TICK_SECONDS": "1",
        "SB_PROBE_INTERVAL_SECONDS": "0",
        "SB_LOG_JSON": "true",
        "SB_KAFKA_BOOTSTRAP": base.kafka_bootstrap,
        "SB_REDIS_URL": base.redis_dsn,
    }


def _x_settings(x: XEmulator) -> str:
    """SB_X for our account on the emulator (its webhook is the edge's /v1/x/webhook)."""
    return json.dumps(
        {
            "account_id": x.account,
            "handle": x.handle,
            "consumer_key": x.consumer_key,
            "consumer_secret": x.consumer_secret,
            "access_token": x.access_token,
            "access_token_secret": x.access_token_secret,
            "base_url": x.base_url,
        }
    )


async def _drained(deployment: Settings, desk: Desk, timeout: float = 120) -> bool:
    """Whether the router's stages caught up with their input within `timeout` real seconds."""
    # the agents' last replies reach the API first, then the stages' ends count them
    await desk.finish()
    try:
        await wait_drained(deployment, timeout)
    except AssertionError:
        return False
    return True


def _outage(plan: DayPlan, opts: DayOptions) -> tuple[datetime, datetime] | None:
    """When the helpdesk webhook is down, on the simulated day."""
    if opts.down is None:
        return None
    return plan.start.replace(hour=opts.down[0]), plan.start.replace(hour=opts.down[1])


@dataclass
class _Outside:
    """The outside services of the day: X and Twilio emulators, the shop's chat identity secret."""

    x: XEmulator
    twilio: TwilioEmulator
    site_secret: bytes

    slack: SlackDesk

    @classmethod
    async def start(cls, clock: SimClock, api: str) -> _Outside:
        """The emulators listening (X on the simulated clock); Slack's events go to the edge at `api`."""
        x = await XEmulator(clock=lambda: clock.now().timestamp()).start()
        slack = await SlackEmulator(channels={"C0SOCIAL": "social", "C0SUPPORT": "support"}).start()
        desk = SlackDesk(slack, clock, api + SLACK_EVENTS)
        return cls(x, await TwilioEmulator().start(), uuid.uuid4().hex.encode(), desk)

    def env(self, smtp_port: int) -> dict[str, str]:
        """The router's settings of the X, phone and chat channels."""
        return {
            "SB_X": _x_settings(self.x),
            "SB_PHONE": _phone_settings(self.twilio),
            "SB_CHAT": _chat_settings(self.site_secret, smtp_port),
            "SB_SLACK": json.dumps(self.slack.settings()),
        }

    async def stop(self) -> None:
        """Stop them."""
        await self.x.stop()
        await self.twilio.stop()
        await self.slack.stop()
        await self.slack.slack.stop()


def _phone_settings(twilio: TwilioEmulator) -> str:
    """SB_PHONE for our number on the Twilio emulator (its webhooks signed for PUBLIC)."""
    return json.dumps(
        {
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "public_base_url": PUBLIC,
            "from_number": OUR_NUMBER,
            "api_base_url": twilio.base_url,
            # simulated seconds (the router's clock): a transcript comes within a minute or two
            "transcript_wait_seconds": 600,
            "missed_call_seconds": 900,
        }
    )


def _smtp(port: int) -> dict[str, object]:
    """The day's SMTP sink, as the router's email and chat sections both name it."""
    return {"host": "127.0.0.1", "port": port, "tls": "none", "from_address": SUPPORT,
            "from_name": "Example Support", "message_id_domain": TEAM_DOMAIN}


def _chat_settings(site_secret: bytes, smtp_port: int) -> str:
    """SB_CHAT: every visitor comes from 127.0.0.1; unseen replies go on by mail to the SMTP sink."""
    return json.dumps(
        {
            "sessions_per_ip_per_hour": 1_000_000,
            "identity_secret": site_secret.decode(),
            # simulated seconds: a visitor who left hears from us ten minutes after the answer
            "email_after_seconds": 600,
            "smtp": _smtp(smtp_port),
        }
    )


async def _import_customers(api: str, directory: bytes) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{api}/v1/customers/import",
            data=directory,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"},
        ) as r,
    ):
        if r.status != 200:
            raise RuntimeError(f"customer import refused: {r.status} {await r.text()}")


class _Background:
    """Customers' later reactions, each a task the day cancels at its end."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Awaitable[None]) -> None:
        """Run `work` in the background."""

        async def run_it() -> None:
            await work

        task = asyncio.create_task(run_it())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self) -> None:
        """Stop whatever is still pending."""
        for task in list(self.tasks):
            task.cancel()


class _Hands:
    """What agents do outside the replies API: answers to the team mailbox."""

    def __init__(
        self,
        deployment: Settings,
        *,
        clock: SimClock,
        folder: Folder,
        plan: DayPlan,
        texts: Texts,
        rng: random.Random,
    ) -> None:
        self.deployment, self.clock, self.folder, self.texts, self.rng = deployment, clock, folder, texts, rng
        self.intents = {c.text[:60]: c.intent for c in plan.contacts}

    async def mail_answer(self, handoff: EmailMessage, text: str) -> None:
        """Answer a handoff mail from the team mailbox (it threads back by the agent token)."""
        now = self.clock.now()
        raw, _ = customer_mail(f"agent@{TEAM_DOMAIN}", "Agent", "", text, now, reply_to=handoff)
        await self.folder.file(raw, now)

    def answer_text(self, request: str) -> str:
        """A real agent's answer to the request's intent."""
        intent = next((i for t, i in self.intents.items() if t in request), None)
        return self.texts.answer(self.rng, intent or self.rng.choice(sorted(self.texts.answers)))


async def run_day(opts: DayOptions, settings: Settings | None = None) -> DayResult:
    """Simulate one day on the real stack and score it from the topics."""
    began = time.monotonic()
    base = settings or Settings()
    run = uuid.uuid4().hex[:8]
    prefix = f"day-{run}-"
    deployment = base.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb"})
    out = opts.out / prefix.rstrip("-")
    out.mkdir(parents=True, exist_ok=True)
    texts = Texts.load()
    plan = plan_day(
        opts.seed,
        opts.day or last_weekday(datetime.now(UTC)),
        ZONE,
        per_day=opts.per_day,
        run=run,
        texts=texts,
        hours=opts.hours,
    )
    # the day starts once the router had time to start (it starts "before the day")
    clock = SimClock(start=plan.start, speed=opts.speed, origin=time.time() + 30)
    background = _Background()
    folder = Folder(base.imap_port, f"sb-day-{run}")
    await asyncio.to_thread(folder.create)
    api = f"http://127.0.0.1:{free_port()}"
    outside = await _Outside.start(clock, api)
    hands = _Hands(
        deployment, clock=clock, folder=folder, plan=plan, texts=texts, rng=random.Random(opts.seed + 1)
    )
    secrets = {"helpdesk-webhook": uuid.uuid4().hex.encode(), "pager-webhook": uuid.uuid4().hex.encode()}
    desk = Desk(
        clock=clock,
        zone=ZONE,
        teams={n: Team(n, scaled(s, opts.staffing)) for n, s in SHIFTS.items()},
        secrets=secrets,
        api=api,
        token=TOKEN,
        rng=hands.rng,
        answer_text=hands.answer_text,
        mail_answer=hands.mail_answer,
        in_thread=outside.slack.answer,
        down=_outage(plan, opts),
    )
    await desk.start()
    crowd = Crowd(
        plan,
        clock=clock,
        folder=folder,
        api=api,
        token=TOKEN,
        rng=random.Random(opts.seed + 2),
        spawn=background.spawn,
        x=outside.x,
        x_webhook=f"{api}/v1/x/webhook",
        twilio=outside.twilio,
        site_secret=outside.site_secret,
    )

    def on_mail(recipient: str, message: EmailMessage) -> None:
        (desk.team_mail if recipient.endswith("@" + TEAM_DOMAIN) else crowd.mail)(recipient, message)

    sink = Sink(free_port(), on_mail, asyncio.get_running_loop()).start()
    env = outside.env(sink.port) | _router_env(
        base,
        prefix=prefix,
        folder=folder.name,
        smtp_port=sink.port,
        policy=day_policy(opts.policy, out / "policy.yaml", desk.url),
        secrets=secrets,
        out=out,
    )
    router = _Router(env, clock, out / "router.log", int(api.rpartition(":")[2]))
    end = plan.end + timedelta(hours=opts.tail_hours)
    try:
        await router.start()
        await crowd.start()
        await _import_customers(api, plan.directory_csv(TEAM_DOMAIN))
        background.spawn(crowd.watch_texts())
        background.spawn(outside.slack.watch(desk.teams["general"].add))  # the social queue's Slack
        await crowd.play()
        await asyncio.sleep(max(0.0, clock.real_at(end) - clock.real()))
        # a loaded machine's router lags: score what it had to do, once it has done it
        drained = await _drained(deployment, desk)
        recorded = await read_recorded(deployment)
    finally:
        background.cancel()
        await crowd.stop()
        await desk.stop()
        router.stop()
        sink.stop()
        await outside.stop()
        await asyncio.to_thread(folder.drop)
    card = score(recorded, until=end, zones=(ZONE,), speed=opts.speed)
    sim = {
        **_sim_counts(plan, crowd, desk, folder, opts=opts, outside=outside),
        "router_drained_after_the_day": drained,
    }
    return write_result(
        out / "scorecard.json", DayResult(card, prefix, plan.start, end, time.monotonic() - began, sim), opts
    )


def _sim_counts(
    plan: DayPlan, crowd: Crowd, desk: Desk, folder: Folder, *, opts: DayOptions, outside: _Outside
) -> dict[str, Any]:
    """What the simulator itself did (beside the system's record, labelled as such)."""
    crowd.read_texts()  # the last texts to callers
    return {
        "x_posts_and_dms_sent": len(outside.x.sent),
        "texts_sent_to_callers": len(outside.twilio.messages),
        "slack_posts": len(outside.slack.slack.posts),
        "slack_events_refused": outside.slack.refused,
        "contacts": len(plan.contacts),
        "contacts_by_channel": dict(Counter(c.channel for c in plan.contacts)),
        "customers": len(plan.customers),
        "customer_side": msgspec.to_builtins(crowd.counts.__dict__),
        "desk": dict(desk.stats.__dict__),
        "mail_filed": folder.filed,
        "staffing": opts.staffing,
        "seed": opts.seed,
        "speed": opts.speed,
    }


def write_result(path: Path, result: DayResult, opts: DayOptions) -> DayResult:
    """The scorecard, what the simulator did, and the options that replay the day."""
    options = {
        "seed": opts.seed,
        "per_day": opts.per_day,
        "speed": opts.speed,
        "hours": [opts.hours.start, opts.hours.stop],
        "staffing": opts.staffing,
        "policy": str(opts.policy),
        "prefix": result.prefix,
    }
    path.write_text(
        json.dumps(
            {
                "scorecard": result.scorecard.as_json(),
                "sim": result.sim,
                "options": options,
                "start": result.start.isoformat(),
                "end": result.end.isoformat(),
            },
            indent=2,
            default=str,
        )
    )
    return result
