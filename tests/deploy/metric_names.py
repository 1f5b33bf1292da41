"""Every metric name a Switchboard process can expose, read from the live Prometheus registry."""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY

# the suffixes Prometheus' exposition adds to a family's name, by type
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}


@cache
def exposed() -> frozenset[str]:
    """Names as scraped from /metrics, for every metric our modules declare."""
    # every stage, source, HTTP module and (through the registry) every connector
    import router.service  # noqa: F401

    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return frozenset(names)
