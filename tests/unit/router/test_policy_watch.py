"""The policy holder: no I/O until load(), then every hostile edit refused while the policy in force stays."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from processors.policy.load import load_policy
from router.policy_watch import PolicyHolder
from router.vocabulary import VOCABULARY, vocabulary
from schemas.errors import ConfigError
from tests.hostile_policies import HOSTILE
from tests.paths import FIXTURES

GOOD = (FIXTURES / "whatif" / "old.yaml").read_text()  # billing words go to billing
NEWER = (FIXTURES / "whatif" / "new.yaml").read_text()  # ... to finance
REFUSED = "policy change refused; the previous policy stays in force"


def reloads(result: str) -> float:
    return REGISTRY.get_sample_value("sb_policy_reloads_total", {"result": result}) or 0.0


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "reason", "") for r in caplog.records if r.getMessage() == REFUSED]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "policy.yaml"
    file.write_text(GOOD)
    return file


def test_the_constructor_reads_nothing(tmp_path: Path) -> None:
    holder = PolicyHolder(tmp_path / "not-there-yet.yaml")
    with pytest.raises(RuntimeError, match=r"load\(\) was not called"):
        _ = holder.current


def test_load_reads_the_file_and_a_bad_one_stops_the_start(path: Path) -> None:
    holder = PolicyHolder(path)
    assert holder.load() is holder.current
    assert set(holder.current.queues) == set(load_policy(path, VOCABULARY).queues)
    path.write_bytes(HOSTILE[0].make(GOOD))
    with pytest.raises(ConfigError) as caught:
        PolicyHolder(path).load()
    assert caught.value.where == f"{path}{HOSTILE[0].where}"


def test_every_hostile_edit_is_refused_and_a_good_one_then_applies(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = PolicyHolder(path)
    first = holder.load()
    refused_before = reloads("refused")
    for case in HOSTILE:
        path.write_bytes(case.make(GOOD))
        assert holder.reload_if_changed() is False, case.name
        assert holder.current is first, case.name
    assert reloads("refused") - refused_before == len(HOSTILE)
    logged = refusals(caplog)
    assert len(logged) == len(HOSTILE)
    assert all(f"{path}{case.where}" in reason and case.reason in reason
               for case, reason in zip(HOSTILE, logged, strict=True))

    path.write_text(NEWER)
    assert holder.reload_if_changed() is True
    assert "finance" in holder.current.queues


def test_a_refusal_is_reported_once_and_again_after_a_revert(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = PolicyHolder(path)
    first = holder.load()
    bad = HOSTILE[0].make(GOOD)
    path.write_bytes(bad)
    assert holder.reload_if_changed() is False
    assert holder.reload_if_changed() is False  # the same file: not reported twice
    assert len(refusals(caplog)) == 1
    path.write_text(GOOD)  # back to the text in force: nothing to apply
    assert holder.reload_if_changed() is False
    assert holder.current is first
    path.write_bytes(bad)  # the same mistake made again is reported again
    assert holder.reload_if_changed() is False
    assert len(refusals(caplog)) == 2


def test_a_missing_file_is_refused_and_its_return_applies(path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    holder = PolicyHolder(path)
    holder.load()
    caplog.set_level(logging.INFO)
    path.unlink()
    assert holder.reload_if_changed() is False
    assert "cannot read the policy file" in refusals(caplog)[0]
    path.write_text(NEWER)
    assert holder.reload_if_changed() is True


def test_a_reload_keeps_whom_this_deployments_channels_reach(path: Path) -> None:
    # a deployment without the email channel: nothing answers the API's customers
    holder = PolicyHolder(path, vocabulary({"api"}))
    unreachable = "nothing running here sends api replies"
    assert holder.load().reach.unreachable("api", "email") == unreachable
    path.write_text(NEWER)
    assert holder.reload_if_changed()
    assert holder.current.reach.unreachable("api", "email") == unreachable
    assert PolicyHolder(path).load().reach.unreachable("api", "email") is None  # every channel
