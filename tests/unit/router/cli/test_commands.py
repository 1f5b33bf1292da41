from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.cli.commands import main


def write(tmp_path: Path, name: str, raw: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


def test_explain_prints_message_and_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "m.json", b'{"sender": "ada@example.com", "text": "where is my parcel?"}')
    assert main(["explain", "--channel", "api", path]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["message"]["sender"] == {"kind": "email", "value": "ada@example.com"}
    stages = [d["stage"] for d in out["decision"]["decisions"]]
    assert stages == ["dedupe", "identify", "thread", "enrich", "classify", "route", "acknowledge"]
    assert out["decision"]["queue"] == "general"
    assert out["decision"]["tier"] == "standard"
    # the API answers by email, and no email channel is configured here
    assert "acknowledgement" not in out
    ack = next(d for d in out["decision"]["decisions"] if d["stage"] == "acknowledge")
    assert (ack["outcome"], ack["reasons"]) == (
        "unreachable", ["no acknowledgement: nothing running here sends api replies"])


def test_explain_shows_urgency_rules_and_queue_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b'{"sender": "ada@example.com", "text": "Your service is down, total outage, this is awful!"}'
    assert main(["explain", "--channel", "api", write(tmp_path, "m.json", body)]) == 0
    decision = json.loads(capsys.readouterr().out)["decision"]
    classify = next(d for d in decision["decisions"] if d["stage"] == "classify")
    assert decision["urgency"] == classify["outcome"] != "normal"
    assert any("outage" in r for r in classify["reasons"])
    assert decision["sentiment"] < 0


def test_explain_refuses_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.json", b"{not json")
    assert main(["explain", "--channel", "api", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "body is not JSON" in captured.err


def test_explain_many_files_gives_one_line_each_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "a.json", b'{"sender": "+14155550100", "text": "hi"}')
    bad = write(tmp_path, "b.json", b'{"sender": "nobody", "text": "hi"}')
    missing = str(tmp_path / "missing.json")
    assert main(["explain", "--channel", "api", good, bad, missing]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == [good, bad, missing]
    assert lines[0]["message"]["sender"]["kind"] == "phone"
    assert "is not an email address" in lines[1]["error"]
    assert "cannot read" in lines[2]["error"]


def test_unknown_channel_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--channel", "pigeon", "-"]) == 2
    assert "unknown channel 'pigeon'" in capsys.readouterr().err


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SB_HTTP_PORT", "not-a-port")
    assert main(["stack", "status"]) == 2
    assert "SB_HTTP_PORT" in capsys.readouterr().err
