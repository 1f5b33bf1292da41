"""The contract suite over every registered agents' tool (connectors/registry.py TOOLS)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from connectors.registry import TOOLS
from connectors.spec import ToolSpec
from tests.contract import checks, samples

SPECS = list(TOOLS.values())
ids = [s.kind for s in SPECS]
pushed = [s for s in SPECS if s.routes is not None]


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_names_a_settings_section(spec: ToolSpec[Any, Any]) -> None:
    checks.settings_section(spec)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_its_destination_is_one_typed_shape(spec: ToolSpec[Any, Any]) -> None:
    checks.destination_shape(spec)


@pytest.mark.integration
@pytest.mark.parametrize("spec", SPECS, ids=ids)
async def test_delivers_through_its_emulator(spec: ToolSpec[Any, Any]) -> None:
    assert spec.kind in samples.TOOL_EMULATORS, (
        f"add an emulator for {spec.kind!r} to tests/contract/samples.py")
    async with samples.TOOL_EMULATORS[spec.kind]() as emulated:
        settings = spec.settings.model_validate(emulated.section)
        destination = msgspec.convert({**samples.DESTINATION_SAMPLES[spec.kind], **emulated.destination},
                                      spec.destination)
        secrets = checks.secrets_of(emulated.secrets)
        assert spec.unready is None or spec.unready(settings, destination, secrets) is None
        tool = spec.build(settings, {"contract": destination}, secrets)
        await tool.start()
        try:
            await tool.deliver(samples.handoff("contract"))
        finally:
            await tool.stop()
        assert emulated.received() == 1


@pytest.mark.parametrize("spec", pushed, ids=[s.kind for s in pushed])
async def test_takes_answers_back_only_when_signed(spec: ToolSpec[Any, Any]) -> None:
    async with samples.TOOL_EMULATORS[spec.kind]() as emulated:
        await checks.serves_its_routes(spec.settings.model_validate(emulated.section), spec, None)
