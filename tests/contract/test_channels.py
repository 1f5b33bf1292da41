"""The contract suite over every registered channel (connectors/registry.py CHANNELS)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from connectors.base import ProbeTarget
from connectors.registry import CHANNELS
from connectors.spec import ConnectorSpec
from schemas.routed import REPLY_MODES
from tests.contract import checks, samples

SPECS = list(CHANNELS.values())
ids = [s.name for s in SPECS]
parsers = [s for s in SPECS if s.parse is not None]
pushed = [s for s in SPECS if s.routes is not None]
senders = [s for s in SPECS if s.outbound is not None]
probed = [s for s in SPECS if s.probe is not None]
answering = [s for s in parsers if s.outbound is not None]


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_names_a_settings_section(spec: ConnectorSpec[Any]) -> None:
    checks.settings_section(spec)


@pytest.mark.parametrize("spec", parsers, ids=[s.name for s in parsers])
def test_parses_its_native_form(spec: ConnectorSpec[Any]) -> None:
    checks.parses_its_samples(spec)


@pytest.mark.parametrize("spec", parsers, ids=[s.name for s in parsers])
def test_refuses_hostile_input_with_a_reason(spec: ConnectorSpec[Any]) -> None:
    checks.refuses_hostile_input(spec)


@pytest.mark.parametrize("spec", pushed, ids=[s.name for s in pushed])
async def test_serves_its_routes_behind_a_check(spec: ConnectorSpec[Any]) -> None:
    await checks.serves_its_routes(spec.settings(), spec, samples.ROUTE_SAMPLES.get(spec.name))


@pytest.mark.integration
@pytest.mark.parametrize("spec", senders, ids=[s.name for s in senders])
async def test_sends_through_its_emulator(spec: ConnectorSpec[Any]) -> None:
    assert spec.outbound is not None and spec.name in samples.SENDER_EMULATORS, (
        f"add an emulator for {spec.name!r}'s sender to tests/contract/samples.py")
    async with samples.SENDER_EMULATORS[spec.name]() as emulated:
        sender = spec.outbound(spec.settings.model_validate(emulated.section))
        await sender.start()
        try:
            receipt = await sender.send(samples.outbound(spec.name))
        finally:
            await sender.stop()
        assert (receipt.status, receipt.reply_id) == ("sent", "rep_contract")
        assert emulated.received() == 1


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_answers_through_channels_that_can_send(spec: ConnectorSpec[Any]) -> None:
    for name in spec.reply_via:
        assert name in CHANNELS, f"{spec.name}.reply_via names {name!r}, which is not registered"
        via = CHANNELS[name]
        assert via.outbound is not None and via.addresses, (
            f"{spec.name} answers through {name}, which has no sender or declares no addresses")
    if spec.outbound is not None:
        assert spec.addresses, f"{spec.name} has a sender: declare the identity kinds it reaches"


@pytest.mark.parametrize("spec", answering, ids=[s.name for s in answering])
def test_its_sender_reaches_the_customers_it_parses(spec: ConnectorSpec[Any]) -> None:
    # else every acknowledgement to its own customers would be planned `unreachable`
    checks.reaches_its_own_customers(spec)


@pytest.mark.integration
@pytest.mark.parametrize("spec", probed, ids=[s.name for s in probed])
async def test_probes_through_its_emulator(spec: ConnectorSpec[Any]) -> None:
    assert spec.probe is not None and spec.name in samples.PROBE_EMULATORS, (
        f"add an emulator for {spec.name!r}'s probe to tests/contract/samples.py")
    async with samples.PROBE_EMULATORS[spec.name]() as emulated:
        target = ProbeTarget(api_url=emulated.destination.get("api_url", "http://127.0.0.1:1"),
                             api_token=SecretStr("contract-token"))
        probe = spec.probe(spec.settings.model_validate(emulated.section), target)
        assert probe is not None, f"{spec.name} offers no probe with its emulator's settings"
        await probe.send("prb_contract", "Switchboard probe [sb-probe:contract]")
        assert emulated.received() == 1


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_declares_its_reply_modes_with_text_first(spec: ConnectorSpec[Any]) -> None:
    # text is what the policy assumes for a channel it does not set: every channel must offer it
    assert spec.reply_modes[0] == "text"
    assert len(set(spec.reply_modes)) == len(spec.reply_modes)
    assert set(spec.reply_modes) <= set(REPLY_MODES)
    # a mode beyond text needs a way to reach the customer outside the channel's own thread
    assert spec.reply_modes == ("text",) or spec.addresses
