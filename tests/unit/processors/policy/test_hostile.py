"""Hostile policy files are refused as FILE:LINE key with a reason, quickly, by the parser and the CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from processors.policy.load import load_policy, parse_policy
from router.cli.commands import main
from router.vocabulary import VOCABULARY
from schemas.errors import ConfigError
from tests.hostile_policies import HOSTILE, Hostile
from tests.paths import FIXTURES

MINIMAL = (FIXTURES / "policy" / "valid_minimal.yaml").read_text()


def refusal(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_policy(path, VOCABULARY)
    return caught.value


@pytest.mark.parametrize("case", HOSTILE, ids=[h.name for h in HOSTILE])
def test_a_hostile_file_is_refused_with_its_place_and_reason(tmp_path: Path, case: Hostile) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(case.make(MINIMAL))
    started = time.monotonic()
    error = refusal(path)
    assert error.where == f"{path}{case.where}"
    assert case.reason in error.reason
    # bounded: the limits stop reading long before the file's end
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("case", HOSTILE, ids=[h.name for h in HOSTILE])
def test_policy_check_prints_the_same_one_line_error(tmp_path: Path, case: Hostile,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(case.make(MINIMAL))
    assert main(["policy", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"switchboard policy: {refusal(path)}\n"


@pytest.mark.parametrize(("old", "new", "where", "reason"), [
    ("rank: 1", "rank: " + "9" * 5000, "p.yaml:5 tiers.standard.rank", "must be a whole number"),
    ("rank: 1", "rank: 2026-13-45", "p.yaml:5 tiers.standard.rank", "must be a whole number"),
    ("rank: 1", "rank: !!str 1", "p.yaml:5 tiers.standard.rank", "must be a whole number"),
    ("normal: 8h", "normal: 99999999999h", "p.yaml:7 tiers.standard.first_response.normal",
     "must be a duration"),
    ("normal: 8h", "normal: \u0661\u0662h", "p.yaml:7 tiers.standard.first_response.normal",
     "must be a duration"),
    ("Europe/Berlin", "America", "p.yaml:27 calendars.office.timezone", "unknown timezone 'America'"),
    ("Europe/Berlin", "Europe/" + "x" * 300, "p.yaml:27 calendars.office.timezone", "unknown timezone"),
    ("Europe/Berlin", "../../../etc/passwd", "p.yaml:27 calendars.office.timezone", "unknown timezone"),
    ("[outage]", '["out\\udc00age"]', "p.yaml:16 urgency.rules[0].keywords[0]", "unpaired surrogate"),
], ids=["5000-digit int", "impossible date", "!!str for a number", "duration past any clock",
        "non-ASCII digits", "a timezone directory", "a 300-letter timezone", "a path as timezone",
        "surrogate in a keyword"])
def test_a_hostile_value_is_refused_at_its_key(old: str, new: str, where: str, reason: str) -> None:
    assert old in MINIMAL
    with pytest.raises(ConfigError) as caught:
        parse_policy(MINIMAL.replace(old, new, 1), "p.yaml", VOCABULARY)
    assert caught.value.where == where
    assert reason in caught.value.reason


def test_standard_tags_with_good_values_still_read() -> None:
    policy = parse_policy(MINIMAL.replace("rank: 1", "rank: !!int 1", 1)
                          .replace("Europe/Berlin", "!!str Europe/Berlin", 1), "p.yaml", VOCABULARY)
    assert policy.tiers["standard"].rank == 1
    assert policy.calendars["office"].timezone.key == "Europe/Berlin"


def test_anchors_and_aliases_within_the_limit_still_read() -> None:
    text = MINIMAL.replace("hours: [mon-fri 09:00-17:00]", "hours: &office [mon-fri 09:00-17:00]", 1).replace(
        "escalations:\n", "  backup:\n    timezone: Europe/Berlin\n    hours: *office\nescalations:\n", 1)
    policy = parse_policy(text, "p.yaml", VOCABULARY)
    assert policy.calendars["backup"].hours == policy.calendars["office"].hours


def test_a_fifo_in_place_of_the_file_is_refused_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    os.mkfifo(path)
    error = refusal(path)
    assert error.where == str(path) and "not a regular file" in error.reason


def test_a_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path)
    assert error.where == str(tmp_path) and "cannot read the policy file" in error.reason
