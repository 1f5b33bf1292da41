"""The leader's topic we create up front is the one Faust's leader assignor subscribes to."""

from __future__ import annotations

import faust

from router.kafka import leader_topic
from router.settings import Settings


def test_the_topic_made_before_the_app_starts_is_the_one_faust_elects_its_leader_on() -> None:
    settings = Settings(app_id="acme-sb")
    app = faust.App(settings.app_id, broker="kafka://127.0.0.1:9", autodiscover=False, web_enabled=False)
    # a Faust upgrade that renamed it would have the app create a second, unready topic again
    assert app._leader_assignor._leader_topic_name == leader_topic(settings) == "acme-sb-__assignor-__leader"
