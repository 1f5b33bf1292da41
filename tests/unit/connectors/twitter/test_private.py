"""What in a reply must never be posted publicly."""

from __future__ import annotations

import pytest

from connectors.twitter.outbound import private_details


@pytest.mark.parametrize(("text", "found"), [
    ("mail ada@example.org please", "an email address"), ("ring +1 415 555 0100", "a phone number"),
    ("call 030 12345678", "a phone number"), ("order 1234 left today", None), ("@ada_x thanks!", None),
    ("back at 10:30", None), ("shipped 2026-03-02", None)])
def test_private_details(text: str, found: str | None) -> None:
    assert private_details(text) == found
