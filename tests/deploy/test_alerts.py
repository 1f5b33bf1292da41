"""deploy/prometheus: the alert rules load in Prometheus, fire when they should, name only
metrics Switchboard exports, and each has its runbook in the operator's guide."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from tests.deploy.metric_names import exposed
from tests.paths import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
GUIDE = ROOT / "docs" / "operators.md"
# Prometheus' own series, not ours
BUILT_IN = {"up"}
# PromQL words that precede `(` or stand before `by`: functions, aggregations, keywords
_NOT_METRICS = {"sum", "max", "min", "avg", "count", "rate", "increase", "deriv", "histogram_quantile",
                "by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
                "le", "topic", "partition", "stage", "error", "destination", "account", "outcome",
                "kind", "result", "code", "connector", "channel", "job", "instance", "endpoint"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: deploy/local/install.sh installs Debian's prometheus package"
    return subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=60, check=False)


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    done = _promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_the_alerts_fire_when_they_should() -> None:
    done = _promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_metric_named_is_exported() -> None:
    ours = exposed()
    for rule in _rules():
        expr = re.sub(r'"[^"]*"|\[[^\]]*\]', "", str(rule["expr"]))  # label values, ranges
        named = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", expr)) - _NOT_METRICS
        assert named, rule["alert"]
        unknown = named - ours - BUILT_IN
        assert not unknown, f"{rule['alert']} names {sorted(unknown)}, which no module exports"


def test_every_alert_has_its_runbook() -> None:
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in GUIDE.read_text().splitlines() if line.startswith("#")}
    for rule in _rules():
        runbook = rule["annotations"]["runbook"]  # type: ignore[index]
        assert runbook == f"docs/operators.md#{str(rule['alert']).lower()}"
        assert runbook.partition("#")[2] in anchors, f"no section {rule['alert']} in {GUIDE.name}"


def test_the_scrape_job_is_the_one_the_alerts_expect() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == ["switchboard"]
    assert config["rule_files"] == ["alerts.yml"]
    assert 'up{job="switchboard"}' in str(_rules()[0]["expr"])
