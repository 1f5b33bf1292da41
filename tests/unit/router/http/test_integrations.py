"""Integration tokens: hashing, scopes, settings validation, the CLI; and the API bodies' validation."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr

from router.cli.commands import main
from router.http.conversations import MAX_TEXT_CHARS, NoteBody, ReplyBody, ResolveBody
from router.http.integrations import (
    DEV_NAME,
    SCOPES,
    Denied,
    IntegrationConfig,
    Integrations,
    digest_hex,
    new_entry,
    new_token,
)
from router.settings import Settings, load
from schemas.errors import ConfigError
from schemas.ids import lifecycle_event_id

HELPDESK = "sbi_helpdesk-token"
CRM = "sbi_crm-token"


def config(name: str, token: str, *scopes: str) -> dict[str, Any]:
    return {"name": name, "token_sha256": digest_hex(token), "scopes": list(scopes)}


def integrations(*dev: str) -> Integrations:
    settings = Settings(integrations=[
        config("helpdesk", HELPDESK, "conversations:read", "conversations:write"),
        config("crm", CRM, "customers:read")],
        api_tokens=tuple(SecretStr(t) for t in dev))
    return Integrations.from_settings(settings)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_is_kept_only_as_its_sha256() -> None:
    assert digest_hex("abc") == hashlib.sha256(b"abc").hexdigest()
    settings = Settings(integrations=[config("helpdesk", HELPDESK, "conversations:read")])
    assert HELPDESK not in repr(settings) and HELPDESK not in settings.model_dump_json()


def test_new_tokens_are_random_and_recognisable() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(t.startswith("sbi_") and len(t) >= 40 for t in tokens)


@pytest.mark.parametrize(("headers", "name"), [
    (bearer(HELPDESK), "helpdesk"),
    ({"Authorization": f"bearer   {CRM}  "}, "crm"),
    (bearer("sbi_nobody"), None),
    ({"Authorization": f"Basic {HELPDESK}"}, None),
    ({"Authorization": "Bearer "}, None),
    ({"Authorization": HELPDESK}, None),
    ({}, None),
    # an undecodable byte arrives from aiohttp as a surrogate
    ({"Authorization": f"Bearer {HELPDESK}\udcff"}, None),
])
def test_the_bearer_token_names_its_integration(headers: dict[str, str], name: str | None) -> None:
    caller = integrations().caller(headers)
    assert (caller.name if caller else None) == name


def test_scopes_decide_401_or_403_naming_the_scope() -> None:
    access = integrations()
    caller = access.authorize(bearer(HELPDESK), "conversations:write")
    assert caller.name == "helpdesk" and caller.may("conversations:read")
    assert not caller.may("customers:read")
    with pytest.raises(Denied) as unknown:
        access.authorize(bearer("sbi_guess"), "conversations:read")
    assert (unknown.value.status, unknown.value.code, unknown.value.scope) == (401, "unauthorized", None)
    with pytest.raises(Denied) as lacking:
        access.authorize(bearer(CRM), "customers:write")
    denied = lacking.value
    assert (denied.status, denied.code, denied.scope) == (403, "forbidden", "customers:write")
    assert "'crm'" in denied.message and "'customers:write'" in denied.message


def test_development_tokens_hold_every_scope() -> None:
    access = integrations("dev-token")
    for scope in SCOPES:
        assert access.authorize(bearer("dev-token"), scope).name == DEV_NAME
    # no development token configured: nothing is open
    with pytest.raises(Denied):
        integrations().authorize(bearer("dev-token"), "messages:write")


def entries(*items: dict[str, Any]) -> str:
    return json.dumps(list(items))


@pytest.mark.parametrize(("raw", "says"), [
    (entries(config("a", "t1", "conversations:read"), config("a", "t2", "customers:read")), "same name"),
    (entries(config("a", "t1", "conversations:read"), config("b", "t1", "customers:read")), "same token"),
    (entries(config(DEV_NAME, "t1", "customers:read")), "reserved"),
    (entries(config("a", "t1", "customers:delete")), "SCOPES_0: Input should be"),
    (entries(config("a", "t1")), "at least 1"),
    (entries(config("Has Spaces", "t1", "customers:read")), "pattern"),
    (entries({**config("a", "t1", "customers:read"), "token_sha256": "abc"}), "pattern"),
    (entries({**config("a", "t1", "customers:read"), "token": "t1"}), "Extra inputs"),
])
def test_bad_integrations_fail_at_start_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, raw: str, says: str) -> None:
    monkeypatch.setenv("SB_INTEGRATIONS", raw)
    with pytest.raises(ConfigError) as e:
        load()
    assert "SB_INTEGRATIONS" in e.value.where and says in e.value.reason


def test_integrations_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_INTEGRATIONS", entries(config("crm", CRM, "customers:read", "customers:write")))
    [crm] = load().integrations
    assert crm == IntegrationConfig(name="crm", token_sha256=digest_hex(CRM),
                                    scopes=("customers:read", "customers:write"))


def test_token_new_prints_a_token_once_and_its_entry(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "helpdesk", "--scope", "conversations:write",
                 "--scope", "conversations:read", "--scope", "conversations:write"]) == 0
    out = capsys.readouterr()
    token, line = out.out.splitlines()
    assert json.loads(line) == {"name": "helpdesk", "token_sha256": digest_hex(token),
                                "scopes": ["conversations:write", "conversations:read"]}
    assert "only this once" in out.err
    # the printed line is exactly what SB_INTEGRATIONS takes
    monkeypatch.setenv("SB_INTEGRATIONS", f"[{line}]")
    caller = Integrations.from_settings(load()).authorize(bearer(token), "conversations:write")
    assert caller.name == "helpdesk"


def test_token_new_refuses_bad_names_and_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "Help Desk", "--scope", "conversations:read"]) == 2
    assert "bad integration" in capsys.readouterr().err
    assert main(["token", "new", DEV_NAME, "--scope", "conversations:read"]) == 2
    assert "reserved" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["token", "new", "crm", "--scope", "customers:delete"])
    with pytest.raises(SystemExit):
        main(["token", "new", "crm"])


def test_new_entry_lists_each_scope_once() -> None:
    entry = json.loads(new_entry("crm", ["customers:read", "customers:read"], "t"))
    assert entry["scopes"] == ["customers:read"]


# --- the conversations API's bodies --------------------------------------------------------


def refusal(decoder: type, raw: bytes) -> str:
    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.json.decode(raw, type=decoder)
    return str(e.value)


def test_reply_bodies_are_validated_naming_the_field() -> None:
    ok = msgspec.json.decode(b'{"text": "On its way", "then": "resolved"}', type=ReplyBody)
    assert (ok.text, ok.author, ok.then) == ("On its way", None, "resolved")
    assert "$.text" in refusal(ReplyBody, b'{"text": ""}')
    assert "$.text" in refusal(ReplyBody, json.dumps({"text": "x" * (MAX_TEXT_CHARS + 1)}).encode())
    assert "`text`" in refusal(ReplyBody, b'{"author": "maria"}')
    assert "$.then" in refusal(ReplyBody, b'{"text": "hi", "then": "closed"}')
    assert "`cc`" in refusal(ReplyBody, b'{"text": "hi", "cc": "boss"}')
    assert "$.author" in refusal(ReplyBody, json.dumps({"text": "hi", "author": "a" * 101}).encode())
    assert "$.note" in refusal(ResolveBody, json.dumps({"note": "n" * 2001}).encode())
    assert "`text`" in refusal(NoteBody, b"{}")


def test_event_ids_are_fixed_by_their_cause_and_kind() -> None:
    assert lifecycle_event_id("rep_1", "resolved") == lifecycle_event_id("rep_1", "resolved")
    assert lifecycle_event_id("rep_1", "resolved") != lifecycle_event_id("rep_1", "waiting_on_customer")
    assert lifecycle_event_id("rep_1", "note") != lifecycle_event_id("rep_2", "note")
    assert lifecycle_event_id("rep_1", "note").startswith("evt_")
