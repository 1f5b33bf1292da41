"""On a Redis Cluster a channel that keeps state in Redis needs a single node of its own (decision 0022)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.chat.settings import ChatSettings
from router.settings import Settings
from schemas.errors import ConfigError


def test_on_one_node_every_channel_shares_the_deployments_redis() -> None:
    settings = Settings(redis_url=SecretStr("redis://127.0.0.1:7001/0"), sections={"chat": {}})
    chat = settings.section("chat", ChatSettings)
    assert chat is not None and chat.redis_url.get_secret_value() == "redis://127.0.0.1:7001/0"


def test_on_a_cluster_a_stateful_channel_without_its_own_node_fails_the_start_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="single Redis node") as refused:
        Settings(redis_cluster=True, redis_url=SecretStr("redis://127.0.0.1:7001/0"),
                 sections={"chat": {}}).section("chat", ChatSettings)
    assert "SB_CHAT__REDIS_URL" in str(refused.value)


def test_on_a_cluster_a_stateful_channel_keeps_to_the_node_it_is_given() -> None:
    settings = Settings(redis_cluster=True, redis_url=SecretStr("redis://127.0.0.1:7001/0"),
                        sections={"chat": {"redis_url": "redis://127.0.0.1:6380/2"}})
    chat = settings.section("chat", ChatSettings)
    assert chat is not None and chat.redis_url.get_secret_value() == "redis://127.0.0.1:6380/2"
    # the channels that keep nothing in Redis need nothing more
    assert Settings(redis_cluster=True, sections={}).section("chat", ChatSettings) is None
