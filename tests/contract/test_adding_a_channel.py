"""Adding a channel is one package and one registry line: the do-nothing `echo` proves it."""

from __future__ import annotations

import pytest

from connectors.registry import CHANNELS
from processors.policy.load import parse_policy
from router.http.server import connector_routes
from router.settings import load
from router.vocabulary import vocabulary
from tests.contract import checks, echo
from tests.paths import FIXTURES


async def test_a_registered_package_is_known_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHANNELS, "echo", echo.SPEC)  # the one registry line
    monkeypatch.setenv("SB_ECHO__PATH", "/v1/echo-in")

    settings = load()  # its settings section is read and validated like any other
    section = settings.section("echo", echo.EchoSettings)
    assert section is not None and section.path == "/v1/echo-in"

    # the policy may name it
    text = (FIXTURES / "policy" / "valid_minimal.yaml").read_text()
    text = text.replace("match: {channels: [email]}", "match: {channels: [echo]}", 1)
    assert parse_policy(text, "p.yaml", vocabulary()).queues["general"].match.channels == {"echo"}

    # the HTTP server mounts its route from the registry
    edge = checks.StubEdge()
    assert "/v1/echo-in" in {r.path for r in connector_routes(settings, edge)}

    # and the contract suite runs over it
    checks.settings_section(echo.SPEC)
    checks.parses_its_samples(echo.SPEC)
    checks.refuses_hostile_input(echo.SPEC)
    await checks.serves_its_routes(section, echo.SPEC, ("text/plain", b"ada@example.org: hello"))
