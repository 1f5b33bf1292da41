"""A probe's verdict: passed, slow, silent or failed, from what came back and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import Probe, ProbeTarget
from connectors.registry import CHANNELS
from connectors.twitter.settings import XProbeAccount
from router.probes import Results, interval_of, probe_once
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


class Tidy(Channel):
    """A channel that records which probes it was asked to take away, and may fail at it."""

    def __init__(self, results: Results, *, fail_removal: bool = False, **kwargs: Any) -> None:
        super().__init__(results, **kwargs)
        self.removed: list[str] = []
        self.fail_removal = fail_removal

    async def remove(self, probe_id: str) -> None:
        self.removed.append(probe_id)
        if self.fail_removal:
            raise TransientError("the mailbox is away")


async def test_a_routed_probe_is_removed_a_silent_one_left_and_a_failed_removal_keeps_its_verdict() -> None:
    verdict, _, channel = await judge(lambda r: Tidy(r, seconds=0.5))
    assert isinstance(channel, Tidy) and channel.removed == [verdict.probe_id]
    verdict, _, channel = await judge(lambda r: Tidy(r, seconds=None))
    assert verdict.kind == "silent" and isinstance(channel, Tidy) and channel.removed == []
    verdict, _, channel = await judge(lambda r: Tidy(r, seconds=0.5, fail_removal=True))
    assert verdict.kind == "passed" and isinstance(channel, Tidy) and channel.removed == [verdict.probe_id]


def test_a_billed_probe_runs_no_more_often_than_it_asks() -> None:
    every_minute = load(reply_token_key=KEY, probe_interval_seconds=60)
    channel = Channel(Results(every_minute))
    assert interval_of(every_minute, channel) == 60
    channel.min_interval_seconds = 3600
    assert interval_of(every_minute, channel) == 3600
    assert interval_of(load(reply_token_key=KEY, probe_interval_seconds=7200), channel) == 7200


@pytest.mark.parametrize(("channel", "section", "probed"), [
    ("phone", {"auth_token": "secret"}, True),
    ("phone", {}, False),  # nothing to sign the webhooks with
    ("phone", {"auth_token": "secret", "transcribe": False}, False),  # no transcript to carry the marker
    ("chat", {}, True),
    ("x", {"account_id": "1", "probe": {"access_token": "t", "access_token_secret": "s"}}, True),
    ("x", {"account_id": "1"}, False),  # no second account to post the mention
])
def test_a_channel_is_probed_only_when_its_settings_give_the_probe_a_way_in(
        channel: str, section: dict[str, Any], probed: bool) -> None:
    spec = CHANNELS[channel]
    assert spec.probe is not None
    made = spec.probe(spec.settings.model_validate(section), ProbeTarget(api_url="http://127.0.0.1:1"))
    assert (made is not None) == probed


def test_the_x_probe_account_names_its_app_whole_or_not_at_all() -> None:
    with pytest.raises(ValidationError, match="go together"):
        XProbeAccount.model_validate({"access_token": "t", "access_token_secret": "s", "consumer_key": "k"})
