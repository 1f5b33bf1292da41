"""What this process's Prometheus metrics say of each connector, by whatever name they carry.

Nothing here names a channel: a connector appears when it is configured, when a metric
carries its name (`sb_source_up{connector}`, `sb_probe_seconds{channel}`,
`sb_probe_failures_total{channel}`), or when a message of its channel is routed (view.py).
A probe counts as failing while its failures counter rose within the last `window`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from router.dashboard.view import ConnectorFacts

__all__ = ["MetricReader"]

_NAME_LABELS = ("connector", "channel")
_UP = "sb_source_up"
_PROBE = "sb_probe_seconds"
_FAILURES = "sb_probe_failures_total"


@dataclass(slots=True)
class MetricReader:
    """Reads connector facts from a registry and remembers when each probe last failed."""

    registry: Collector = REGISTRY
    window: timedelta = timedelta(minutes=10)
    _failures: dict[str, float] = field(default_factory=dict)
    _failed_at: dict[str, datetime] = field(default_factory=dict)

    def read(self, configured: Iterable[str], now: datetime) -> list[ConnectorFacts]:
        """The facts of every connector configured or named by a metric, at `now`."""
        values: defaultdict[str, dict[str, float]] = defaultdict(dict)
        probe_sums: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for family in self.registry.collect():
            for sample in family.samples:
                name = next((sample.labels[k] for k in _NAME_LABELS if k in sample.labels), None)
                if name is None:
                    continue
                if sample.name in (_UP, _PROBE):
                    values[name][sample.name] = sample.value
                elif sample.name == _FAILURES:
                    # one series per kind of failure (slow, silent, ...): the probe's total
                    values[name][_FAILURES] = values[name].get(_FAILURES, 0.0) + sample.value
                elif sample.name in (_PROBE + "_sum", _PROBE + "_count"):
                    probe_sums[name][sample.name.endswith("_count")] += sample.value
        for name, (total, count) in probe_sums.items():
            if count:  # a histogram: its mean stands for the probe's time
                values[name].setdefault(_PROBE, total / count)
        wanted = set(configured)
        facts = []
        for name in sorted(wanted | set(values)):
            v = values.get(name, {})
            failures = v.get(_FAILURES)
            facts.append(ConnectorFacts(
                name, configured=name in wanted,
                connected=None if _UP not in v else v[_UP] >= 1,
                probe_seconds=v.get(_PROBE), probe_failures=failures,
                probe_failing=self._failing(name, failures, now)))
        return facts

    def _failing(self, name: str, failures: float | None, now: datetime) -> bool:
        if failures is None:
            return False
        before = self._failures.get(name)
        self._failures[name] = failures
        if before is not None and failures > before:
            self._failed_at[name] = now
        elif before is None and failures > 0:
            # first look: failures happened before we watched; count them as recent
            self._failed_at.setdefault(name, now)
        at = self._failed_at.get(name)
        return at is not None and now - at < self.window
