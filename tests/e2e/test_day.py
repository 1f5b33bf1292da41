"""A short simulated support day on the real stack: its scorecard holds the facts that never bend."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.day.run import DayOptions, run_day
from router.settings import Settings

pytestmark = pytest.mark.e2e


async def test_a_short_day_has_no_duplicates_and_every_repeat_contact_carries_history(
    stack: Settings, tmp_path: Path
) -> None:
    # two morning hours (the helpdesk down in the second), half an hour of aftercare, 240x compressed
    day = await run_day(DayOptions(seed=1, per_day=160, speed=240, hours=range(9, 11), tail_hours=0.5,
                                   down=(10, 11), out=tmp_path), settings=stack)
    n = day.scorecard.numbers
    assert 15 <= day.sim["contacts"] <= 60, day.sim
    # every first contact was routed, and the reactions to our answers with them
    assert n["messages_routed"] >= day.sim["contacts"]
    assert n["duplicates"] == {"events_in_two_conversations": 0, "parallel_conversations": 0}
    assert n["history"]["carrying_history"] == n["history"]["routed_after_earlier_contact"]
    # mail went both ways through Dovecot and SMTP: acknowledgements reached customers, agents answered
    assert day.sim["customer_side"]["mail_received"].get("acknowledgement", 0) > 0
    assert sum(t.get("met", 0) + t.get("missed", 0) for t in n["first_response_sla"].values()) > 0
    # the helpdesk's outage hour was covered by its fallback, and nothing was left unhanded
    assert day.sim["desk"]["down_refusals"] > 0
    assert n["tool_down"]["handed_to_fallback"] > 0
    # chat visitors wrote through the real socket and saw agents' answers there; callers left
    # voicemails through Twilio's signed webhooks and were texted back or called back
    by_channel = n["first_response_by_channel"]
    side = day.sim["customer_side"]
    assert by_channel["chat"]["conversations"] >= 1 and side["chats_opened"] >= 1, (by_channel, side)
    assert side["chat_answers_seen"] + side["continuation_mails"] >= 1, side
    assert by_channel["phone"]["conversations"] >= 1 and side["voicemails"] >= 1, (by_channel, side)
    assert day.sim["texts_sent_to_callers"] >= 1 and day.sim["router_drained_after_the_day"], day.sim
    assert by_channel["phone"].get("answered", 0) + by_channel["phone"].get("called_back", 0) >= 1
    # X customers' conversations went to the social team's Slack; its agents answered in the threads
    assert day.sim["slack_posts"] >= 1 and day.sim["slack_events_refused"] == 0, day.sim
    assert (tmp_path / day.prefix.rstrip("-") / "scorecard.json").exists()
