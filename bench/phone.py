"""Benchmark of the phone channel, in one run against a real `switchboard run`, Redis and Kafka.

1. Voice webhook → TwiML answered: Twilio waits on it while the caller hears ringing
   (goal p99 ≤ 100 ms). Calls come one at a time, then `--concurrency` at a time, each
   signed as Twilio signs.
2. Transcription callback → routed: each call is answered and its recording held first;
   then the transcripts come at random moments and the time until the routed conversation
   appears on `sb.routed.v1` is measured (goal p95 ≤ 500 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import time
import uuid
from collections.abc import Mapping
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

from bench.faults.stack import free_port
from bench.mail import _stamp_from_body
from bench.pipeline import Collector, percentile, process
from bench.topics import delete_run
from router.settings import load
from schemas.topics import ROUTED

__all__ = ["main"]

TOKEN = "bench-auth-token"
PUBLIC = "https://support.example.com"
PREFIX = "/v1/phone"
OUR_NUMBER = "+4930901820"
_SIGNER = RequestValidator(TOKEN)


class Caller:
    """Posts a call's webhooks to the edge, signed for the public URL."""

    def __init__(self, session: aiohttp.ClientSession, edge: str, n: int) -> None:
        self.session, self.edge = session, edge
        self.call_sid, self.recording_sid = "CA" + secrets.token_hex(16), "RE" + secrets.token_hex(16)
        self.number = f"+49151{n:08d}"

    def _params(self) -> dict[str, str]:
        return {"AccountSid": "AC" + "0" * 32, "CallSid": self.call_sid, "From": self.number,
                "To": OUR_NUMBER, "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
                "StirVerstat": "TN-Validation-Passed-A"}

    async def post(self, path: str, params: Mapping[str, str]) -> str:
        headers = {"X-Twilio-Signature": _SIGNER.compute_signature(PUBLIC + path, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        async with self.session.post(self.edge + path, data=urlencode(params), headers=headers) as answer:
            body = await answer.text()
            if answer.status != 200:
                raise SystemExit(f"{path}: {answer.status} {body[:200]}")
            return body

    async def answer(self) -> float:
        """The voice webhook; seconds until the TwiML came back."""
        started = time.perf_counter()
        await self.post(f"{PREFIX}/voice", self._params())
        return time.perf_counter() - started

    async def record(self) -> None:
        """The recording-status callback, to the URL our TwiML names (the caller in its query)."""
        query = urlencode({"From": self.number, "To": OUR_NUMBER, "StirVerstat": "TN-Validation-Passed-A"})
        await self.post(f"{PREFIX}/recording?{query}", {
            "AccountSid": "AC" + "0" * 32, "CallSid": self.call_sid, "RecordingSid": self.recording_sid,
            "RecordingStatus": "completed", "RecordingDuration": "14",
            "RecordingUrl": f"https://api.twilio.com/Recordings/{self.recording_sid}"})

    async def transcribe(self) -> None:
        """The transcription callback, its text stamped with the moment it was sent."""
        await self.post(f"{PREFIX}/transcription", self._params() | {
            "TranscriptionSid": "TR" + secrets.token_hex(16), "TranscriptionStatus": "completed",
            "TranscriptionText": f"My line is down. bench-t0={time.time():.6f}",
            "RecordingSid": self.recording_sid, "CallStatus": "completed"})


async def _ready(session: aiohttp.ClientSession, edge: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(edge + "/readyz") as answer:
                if answer.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise SystemExit("switchboard run never became ready")


async def answers(session: aiohttp.ClientSession, edge: str, calls: int, concurrency: int) -> list[float]:
    """Answer times of `calls` voice webhooks, `concurrency` at a time."""
    limit, times = asyncio.Semaphore(concurrency), []

    async def one(n: int) -> None:
        async with limit:
            times.append(await Caller(session, edge, n).answer())

    await asyncio.gather(*(one(n) for n in range(calls)))
    return times


async def transcripts(session: aiohttp.ClientSession, edge: str, watch: Collector, calls: int,
                      spread: float) -> list[float]:
    """Transcript → routed latencies of `calls` voicemails whose recordings are already held."""
    callers = [Caller(session, edge, 1_000_000 + n) for n in range(calls)]
    for caller in callers:
        await caller.answer()
        await caller.record()
    watch.latencies.clear()
    rng = random.Random(12)
    for caller in callers:
        await asyncio.sleep(rng.uniform(0, 2 * spread / calls))
        await caller.transcribe()
    if not await watch.wait_for(calls, 120):
        raise SystemExit(f"only {len(watch.latencies)} of {calls} voicemails routed")
    return list(watch.latencies)


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Both measurements against one edge process; its topics are deleted after."""
    settings = load()
    prefix = f"bench-{uuid.uuid4().hex[:8]}-phone-"
    port = free_port()
    edge = f"http://127.0.0.1:{port}"
    env = {"SB_REPLY_TOKEN_KEY": "bench-reply-token-key-not-secret", **os.environ,
           "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"{prefix}sb", "SB_HTTP_PORT": str(port),
           "SB_LOG_LEVEL": "WARNING",
           "SB_PHONE": json.dumps({"auth_token": TOKEN, "public_base_url": PUBLIC})}
    try:
        with process([sys.executable, "-m", "router.cli", "run"], env):
            watch = Collector(settings, f"{prefix}{ROUTED.name}", _stamp_from_body)
            await watch.start()
            try:
                async with aiohttp.ClientSession() as session:
                    await _ready(session, edge)
                    await transcripts(session, edge, watch, 1, 0)  # warm-up
                    answered = {c: await answers(session, edge, args.calls, c) for c in (1, args.concurrency)}
                    routed = await transcripts(session, edge, watch, args.voicemails, args.spread)
            finally:
                await watch.stop()
    finally:
        await delete_run(settings, prefix)
    voice = [{"calls": len(times), "concurrency": c, **_ms(times, 0.99)} for c, times in answered.items()]
    transcript = {"voicemails": len(routed), **_ms(routed, 0.95)}
    for each in voice:
        print(f"voice webhook answered: {each} (goal p99 ≤ 100 ms)", flush=True)
    print(f"transcript → routed: {transcript} (goal p95 ≤ 500 ms)", flush=True)
    return {"voice_webhook": voice, "transcript_to_routed": transcript}


def _ms(seconds: list[float], tail: float) -> dict[str, float | int]:
    """p50, the tail quantile and the max, in milliseconds."""
    return {"p50_ms": round(percentile(seconds, 0.5) * 1000, 1),
            f"p{round(tail * 100)}_ms": round(percentile(seconds, tail) * 1000, 1),
            "max_ms": round(max(seconds) * 1000, 1)}


def main() -> None:
    """Command-line entry: `python -m bench.phone`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="voice webhooks answered")
    parser.add_argument("--concurrency", type=int, default=8, help="voice webhooks in flight at once")
    parser.add_argument("--voicemails", type=int, default=200, help="transcripts routed")
    parser.add_argument("--spread", type=float, default=20, help="seconds to send the transcripts over")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
