"""What changes a stage's behaviour is never optional: production and tests build the same stage."""

from __future__ import annotations

import inspect

import pytest

from processors.dispatch.stage import DispatchStage
from processors.intake.stage import Intake
from processors.send.stage import SendStage

REQUIRED = [
    (SendStage, "policy"),  # None skipped the reply guard
    (SendStage, "cards"),  # None left replies to solved conversations unguarded for upsell
    (Intake, "cards"),  # None took an agent's mailbox answer for a customer's message
    (DispatchStage, "cards"),  # None kept cards for the dedupe TTL, not the conversation's
    (DispatchStage, "thread_ttl_seconds"),
]


@pytest.mark.parametrize(("stage", "name"), REQUIRED, ids=[f"{s.__name__}.{n}" for s, n in REQUIRED])
def test_the_argument_has_no_default(stage: type, name: str) -> None:
    assert inspect.signature(stage).parameters[name].default is inspect.Parameter.empty
