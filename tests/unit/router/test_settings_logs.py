from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from router.logs import JsonFormatter
from router.settings import DEVELOPMENT_KEY, Settings, load
from schemas import ConfigError
from schemas.topics import ROUTED


def test_secrets_are_masked_in_every_printout() -> None:
    settings = Settings(redis_url=SecretStr("redis://:hunter2@h:1/0"), api_tokens=(SecretStr("t0k"),))
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2" not in text and "t0k" not in text
    assert settings.redis_dsn == "redis://:hunter2@h:1/0"


def test_invalid_environment_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="SB_BATCH_SIZE"):
        load()


def test_topic_prefix_applies_to_every_topic() -> None:
    assert Settings(topic_prefix="t1-").topic(ROUTED) == "t1-sb.routed.v1"


def test_json_logs_carry_context_fields() -> None:
    record = logging.LogRecord("router", logging.INFO, __file__, 1, "routed %s", ("x",), None)
    record.event_id = "ev_1"
    record.conversation_id = "con_1"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "routed x" and doc["level"] == "info"
    assert (doc["event_id"], doc["conversation_id"]) == ("ev_1", "con_1")


@pytest.mark.parametrize("key", [None, "", "short-key"], ids=["built-in", "empty", "short"])
def test_processes_refuse_a_guessable_reply_token_key(key: str | None) -> None:
    settings = Settings(reply_token_key=SecretStr(DEVELOPMENT_KEY if key is None else key))
    with pytest.raises(ConfigError, match="development key") as caught:
        settings.require_reply_token_key()
    assert caught.value.where == "environment SB_REPLY_TOKEN_KEY"
    Settings(reply_token_key=SecretStr("a-long-random-secret-of-ours")).require_reply_token_key()


@pytest.mark.parametrize("value", ["intake,brain", " intake , brain ", '["intake", "brain"]'])
def test_list_settings_take_commas_or_json(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SB_STAGES", value)
    assert load().stages == ("intake", "brain")


@pytest.mark.parametrize(("variable", "value"), [
    ("SB_STAGES", "intake,bogus"), ("SB_STAGES", "[broken"), ("SB_SEND_RATES", "{x"),
    ("SB_KAFKA_PARTITIONS", "many"), ("SB_EMAIL", "{not json"), ("SB_SLACK__BOT_TOKEN", ""),
    # JSON nested deeper than the stack
    ("SB_STAGES", "[" * 100_000), ("SB_EMAIL", "[" * 100_000), ("SB_EMAIL__ACCOUNTS", "[" * 100_000),
])
def test_a_bad_setting_is_one_line_naming_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                        value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert caught.value.where.startswith(f"environment {variable.split('__', maxsplit=1)[0]}")
    assert "\n" not in str(caught.value)


def test_a_value_nested_deeper_than_the_stack_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_SEND_RATES", "[" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        load()
    assert caught.value.where == "environment SB_*"


def test_errors_kafka_retries_by_itself_are_warnings_and_others_stay_errors() -> None:
    from router.logs import RetriedByKafka

    def record(name: str, text: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, text, None, None)

    moved = record("aiokafka.consumer.fetcher",
                   "Failed fetch offsets from 1: [Error 6] NotLeaderForPartitionError: TopicPartition(...)")
    other = record("aiokafka.consumer.fetcher", "Unexpected error in fetcher routine")
    ours = record("router.loop", "NotLeaderForPartitionError in our own words")
    for r in (moved, other, ours):
        assert RetriedByKafka().filter(r)
    assert [r.levelname for r in (moved, other, ours)] == ["WARNING", "ERROR", "ERROR"]
