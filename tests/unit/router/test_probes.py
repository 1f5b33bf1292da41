"""A probe's verdict: passed, slow, silent or failed, from what came back and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import Probe
from router.probes import Results, probe_once
from router.settings import Settings, load
from schemas.errors import TransientError
from schemas.probe import ProbeEvent, find_mark

T0 = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
KEY = "unit-probe-reply-token-key"


class Channel(Probe):
    """A channel that hands each probe straight back as routed after `seconds`, or fails, or loses it."""

    def __init__(self, results: Results, *, seconds: float | None = 0.5,
                 error: Exception | None = None) -> None:
        self.results, self.seconds, self.error = results, seconds, error
        self.texts: list[str] = []

    async def send(self, probe_id: str, text: str) -> None:
        self.texts.append(text)
        if self.error is not None:
            raise self.error
        if self.seconds is not None:
            self.results.take(ProbeEvent(event_id=f"{probe_id}.routed", probe_id=probe_id, channel="api",
                                         kind="routed", sent_at=T0, at=T0, seconds=self.seconds,
                                         queue="general"))


def settings() -> Settings:
    return load(reply_token_key=KEY, probe_slow_seconds=2.0, probe_timeout_seconds=0.2)


async def judge(channel_of: object) -> tuple[ProbeEvent, list[ProbeEvent], Channel]:
    results = Results(settings())
    channel = channel_of(results)  # type: ignore[operator]
    published: list[ProbeEvent] = []

    async def publish(event: ProbeEvent) -> None:
        published.append(event)

    verdict = await probe_once(settings(), "api", channel, results, publish, clock=lambda: T0)
    return verdict, published, channel


async def test_a_probe_routed_in_time_passes_and_carries_a_marker_intake_accepts() -> None:
    verdict, published, channel = await judge(lambda r: Channel(r, seconds=0.5))
    assert (verdict.kind, verdict.seconds, verdict.queue) == ("passed", 0.5, "general")
    assert published == [verdict]
    [text] = channel.texts
    mark = find_mark(text, "api", KEY.encode(), T0 + timedelta(seconds=1))
    assert mark is not None and mark.probe_id == verdict.probe_id


@pytest.mark.parametrize(("channel_of", "kind", "reason"), [
    (lambda r: Channel(r, seconds=3.0), "slow", "routed in 3.00s, past 2s"),
    (lambda r: Channel(r, seconds=None), "silent", "not routed within 0.2s"),
    (lambda r: Channel(r, error=TransientError("SMTP 127.0.0.1:1 refused")), "failed",
     "the api channel did not take the probe: SMTP 127.0.0.1:1 refused"),
    (lambda r: Channel(r, error=ValueError("bad URL")), "failed", "the api probe raised ValueError: bad URL"),
], ids=["slow", "silent", "refused", "surprise"])
async def test_anything_else_is_a_failure_with_its_reason(channel_of: object, kind: str, reason: str) -> None:
    verdict, published, _ = await judge(channel_of)
    assert (verdict.kind, verdict.reason) == (kind, reason)
    assert published == [verdict]


async def test_a_report_for_another_probe_is_ignored() -> None:
    results = Results(settings())
    waiting = results.expect("prb_mine")
    results.take(ProbeEvent(event_id="x", probe_id="prb_other", channel="api", kind="routed", sent_at=T0,
                            at=T0, seconds=1.0))
    results.take(ProbeEvent(event_id="y", probe_id="prb_mine", channel="api", kind="passed", sent_at=T0,
                            at=T0, seconds=1.0))
    assert not waiting.done()
