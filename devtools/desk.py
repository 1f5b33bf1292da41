"""`switchboard desk`: a local agents' desk that receives the router's webhooks and prints them.

For development and demos. It listens where deploy/policy.example.yaml delivers:
`helpdesk-webhook` at http://127.0.0.1:18090/switchboard (signed with SB_WEBHOOK_SECRET)
and, when SB_PAGER_SECRET is set, `pager-webhook` at http://127.0.0.1:18091/page. Every
request's signature is checked (connectors/webhook/sign.py; 401 when it fails), a
delivery seen before (X-Switchboard-Delivery) is answered 200 and not printed again, and
each new delivery prints one block: a routed conversation with who, how urgent, the words,
why, and ready-to-paste curl lines that answer or resolve it through the replies API; a
reply receipt with its status, reason and guard flags; a notice with its text.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import quote

from aiohttp import web
from pydantic import SecretStr

from connectors.webhook.errors import SignatureError
from connectors.webhook.sign import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from connectors.webhook.tool import WebhookBody
from router.settings import Settings
from schemas.codec import decode
from schemas.conversation import ConversationCard
from schemas.errors import ConfigError, ParseError, SwitchboardError
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation

__all__ = [
    "API_URL",
    "DEMO_TOKEN",
    "PAGER_PORT",
    "PORT",
    "Desk",
    "DeskEndpoint",
    "endpoints_for",
    "render",
    "run",
]

PORT = 18090
PAGER_PORT = 18091
API_URL = "http://127.0.0.1:18080"
# the bearer token `make run` gives the router; the curl lines are for that demo
DEMO_TOKEN = "demo-token"
MESSAGE_LINES = 6
LINE_CHARS = 200
REASONS = 8
# stages whose reasons are bookkeeping (seen before? who is it? acknowledged?): shown last
_BOOKKEEPING = frozenset({"dedupe", "identify", "acknowledge"})
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# an address safe to print in a command line (customer text: nothing a shell would read)
_MAILBOX = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}")
# delivery ids remembered for dedupe: far more than a demo's worth, still bounded
REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class DeskEndpoint:
    """One path the desk listens on, the port, and the secret its requests are signed with."""

    name: str
    port: int
    path: str
    secret: SecretStr


def endpoints_for(settings: Settings, *, port: int = PORT,
                  pager_port: int = PAGER_PORT) -> list[DeskEndpoint]:
    """The helpdesk endpoint, and the pager's when its secret is set; ConfigError without a webhook secret."""
    # the variables the example policy names as its webhooks' secret_env
    secret = settings.secret("SB_WEBHOOK_SECRET")
    if secret is None:
        raise ConfigError("SB_WEBHOOK_SECRET is not set: the desk checks every delivery's signature with "
                          "it. Export the secret the router signs with (make run uses demo-webhook-secret)")
    found = [DeskEndpoint("helpdesk-webhook", port, "/switchboard", secret)]
    pager = settings.secret("SB_PAGER_SECRET")
    if pager is not None:
        found.append(DeskEndpoint("pager-webhook", pager_port, "/page", pager))
    return found


class Desk:
    """The receivers: one small server per endpoint, all printing to `out`."""

    def __init__(self, endpoints: Sequence[DeskEndpoint], *, out: TextIO, api_url: str = API_URL,
                 host: str = "127.0.0.1", clock: Callable[[], float] = time.time) -> None:
        self.endpoints = tuple(endpoints)
        self.urls: list[str] = []
        self._out = out
        self._api_url = api_url.rstrip("/")
        self._host = host
        self._clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._runners: list[web.AppRunner] = []

    def app(self, endpoint: DeskEndpoint) -> web.Application:
        """The application serving one endpoint."""
        app = web.Application()

        async def receive(request: web.Request) -> web.Response:
            return await self._receive(endpoint, request)

        app.router.add_post(endpoint.path, receive)
        return app

    async def start(self) -> list[str]:
        """Listen on every endpoint (port 0: any free port); returns their URLs."""
        for endpoint in self.endpoints:
            runner = web.AppRunner(self.app(endpoint), access_log=None)
            await runner.setup()
            self._runners.append(runner)
            try:
                await web.TCPSite(runner, self._host, endpoint.port).start()
            except OSError as e:
                await self.stop()
                raise SwitchboardError(
                    f"cannot listen on {self._host}:{endpoint.port} for {endpoint.name}: {e.strerror or e} "
                    "(another desk running? 'make stop' stops it)") from e
            host, port = runner.addresses[0][:2]
            self.urls.append(f"http://{host}:{port}{endpoint.path}")
        return self.urls

    async def stop(self) -> None:
        """Stop listening; safe to call twice."""
        while self._runners:
            await self._runners.pop().cleanup()

    async def _receive(self, endpoint: DeskEndpoint, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            verify(endpoint.secret.get_secret_value().encode(), request.headers.get(SIGNATURE_HEADER, ""),
                   raw, self._clock())
        except SignatureError as e:
            self.say(f"!! {endpoint.name}: refused a request: {e.reason} "
                     "(is the router's secret the same as the desk's?)\n")
            return web.json_response({"error": e.reason}, status=401)
        delivery = request.headers.get(DELIVERY_HEADER, "")
        if not delivery:
            return web.json_response({"error": f"{DELIVERY_HEADER} is missing"}, status=400)
        if delivery in self._seen:
            # the router may deliver again after a lost answer: already shown
            return web.json_response({"ok": True, "duplicate": True})
        try:
            body = decode(raw, WebhookBody)
        except ParseError as e:
            self.say(f"!! {endpoint.name}: a signed body that is not a delivery: {e.reason}\n")
            return web.json_response({"error": e.reason}, status=400)
        self._remember(delivery)
        now = datetime.fromtimestamp(self._clock(), UTC)
        self.say(render(body, where=endpoint.name, api_url=self._api_url, now=now))
        return web.json_response({"ok": True})

    def _remember(self, delivery: str) -> None:
        self._seen[delivery] = None
        if len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)

    def say(self, text: str) -> None:
        """Print to the desk's output."""
        # flushed at once: `make run` pipes the desk's output through a prefixer
        self._out.write(text)
        self._out.flush()


def render(body: WebhookBody, *, where: str, api_url: str = API_URL, now: datetime | None = None) -> str:
    """One readable block for one delivery, ending in a blank line."""
    card = body.conversation
    title = f"── {body.event} · {card.conversation_id} · {where} · {body.delivery_id} "
    lines = [_printable(title) + "─" * max(3, 100 - len(title))]
    if body.routed is not None:
        lines += _routed(body.routed, card, api_url, now or datetime.now(UTC))
    elif body.receipt is not None:
        lines += _receipt(body.receipt)
    else:
        lines += _field("text", [body.text or "(no text)"])
        lines += _field("status", [f"{card.status} · queue {card.queue} · P{card.priority}"])
    return "\n".join(lines) + "\n\n"


def _routed(routed: RoutedConversation, card: ConversationCard, api_url: str, now: datetime) -> list[str]:
    message = routed.message
    # a transfer brings no message: the conversation's own customer, channel and subject
    sender, channel = (message.sender, message.channel) if message else (card.recipient, card.channel)
    subject = message.subject if message else card.subject
    who = f"{routed.customer_name} <{sender}>" if routed.customer_name else str(sender)
    conversation = quote(routed.conversation_id, safe="")
    base = f"{api_url}/v1/conversations/{conversation}"
    auth = f"-H 'Authorization: Bearer {DEMO_TOKEN}' -H 'Content-Type: application/json'"
    lines = [
        *_field("queue", [f"{routed.queue} · P{routed.priority} · {routed.tier} · {routed.urgency} urgency"
                          + (f" · agent {routed.agent}" if routed.agent else "")]),
        *_field("due", [_due(routed.first_response_due, now)]),
        *_field("customer", [f"{who} ({routed.customer_id}) on {channel}"]),
    ]
    if subject:
        lines += _field("subject", [subject])
    if routed.transfer is not None:
        lines += _field("transfer", [routed.transfer.words()])
    if message is not None:
        lines += _field("message", list(_first_lines(message.text)) or ["(no text)"])
    # why it ranks and goes where it does first: the routing stages' reasons lead
    reasons = [r for d in routed.decisions if d.stage not in _BOOKKEEPING for r in d.reasons]
    reasons += [r for d in routed.decisions if d.stage in _BOOKKEEPING for r in d.reasons]
    shown = [*reasons[:REASONS], *([f"(+{len(reasons) - REASONS} more)"] if len(reasons) > REASONS else [])]
    lines += _field("why", shown or ["(no reasons given)"])
    if routed.callback is not None:
        task = routed.callback
        lines += _field("callback", [f"{task.number or '(withheld: no number)'} · {_due(task.due, now)}"])
        lines += _field("called", [f"curl -s {auth} -d '{{\"author\": \"you\"}}' {base}/callback"],
                        clean=False)
    lines += _field("answer", [f"curl -s {auth} -d '{{\"text\": \"...\"}}' {base}/replies"], clean=False)
    lines += _field("resolve", [f"curl -s {auth} -d '{{}}' {base}/resolve"], clean=False)
    if sender.kind == "email" and _MAILBOX.fullmatch(sender.value):
        # where the answer lands on the local stack: its SMTP server delivers every address
        read = f".venv/bin/switchboard mail read {sender.value}"
        lines += _field("read", [f"{read}  (the customer's mailbox on the local stack)"], clean=False)
    return lines


def _receipt(receipt: DeliveryReceipt) -> list[str]:
    lines = [
        *_field("status", [f"{receipt.status} · {receipt.kind or 'agent_reply'} {receipt.reply_id} "
                           f"on {receipt.channel}"]),
        *_field("reason", [receipt.reason or "(none given)"]),
    ]
    flags = [f"{f.action} {f.rule}: {', '.join(map(_quoted, f.matched))} - {f.reason}" for f in receipt.flags]
    return lines + _field("flags", flags or ["(none)"])


def _quoted(words: str) -> str:
    return f"“{words}”"


def _due(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "no first-response target"
    minutes = round((when - now).total_seconds() / 60)
    span = f"{abs(minutes) // 60}h {abs(minutes) % 60:02d}m" if abs(minutes) >= 60 else f"{abs(minutes)}m"
    relative = f"in {span}" if minutes >= 0 else f"{span} overdue"
    return f"first response by {when.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({relative})"


def _first_lines(text: str) -> Iterator[str]:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    for line in lines[:MESSAGE_LINES]:
        yield line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + "…"
    if len(lines) > MESSAGE_LINES:
        yield f"(+{len(lines) - MESSAGE_LINES} more lines)"


def _field(name: str, values: Sequence[str], *, clean: bool = True) -> list[str]:
    """`name` and its first value on one line, further values indented beneath."""
    shown = [_printable(v) if clean else v for v in values]
    return [f"  {name if i == 0 else '':<9}{value}" for i, value in enumerate(shown)]


def _printable(text: str) -> str:
    # customer text must not drive the terminal: control characters (escapes) and bidi
    # overrides are shown as ·; joiners stay, so emoji sequences still draw
    return "".join("·" if c in _BIDI or unicodedata.category(c) == "Cc" else c for c in text)


async def run(settings: Settings, *, port: int = PORT, pager_port: int = PAGER_PORT,
              api_url: str = API_URL, out: TextIO = sys.stdout) -> None:
    """Serve until SIGINT or SIGTERM."""
    desk = Desk(endpoints_for(settings, port=port, pager_port=pager_port), out=out, api_url=api_url)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    urls = await desk.start()
    try:
        names = ", ".join(f"{e.name} at {url}" for e, url in zip(desk.endpoints, urls, strict=True))
        desk.say(f"desk: listening for {names}\n")
        if len(desk.endpoints) == 1:
            desk.say("desk: SB_PAGER_SECRET is not set, so pages (pager-webhook) are not received\n")
        await stopped.wait()
    finally:
        await desk.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
