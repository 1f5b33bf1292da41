"""The policy's `private_replies:` switch: validated at load, first matching rule wins."""

from __future__ import annotations

import pytest

from processors.policy.load import parse_policy
from router.vocabulary import VOCABULARY
from schemas.errors import ConfigError
from tests.paths import ROOT

MINIMAL = (ROOT / "tests" / "fixtures" / "policy" / "valid_minimal.yaml").read_text()
RULE = """
private_replies:
  - name: billing-in-private
    reason: invoices are not for a public thread
    queues: [general]
    channels: [x]
    keywords: [invoice, refund]
    public_note: We've answered you in a private message.
"""


def test_a_rule_matches_its_queue_channel_and_words() -> None:
    [rule] = parse_policy(MINIMAL + RULE, "p.yaml", VOCABULARY).private_replies
    assert rule.matches(tier="standard", queue="general", channel="x", text="Your refund is on its way")
    assert not rule.matches(tier="standard", queue="general", channel="x", text="Your parcel left")
    assert not rule.matches(tier="standard", queue="general", channel="email", text="Your refund")
    assert not rule.matches(tier="standard", queue="other", channel="x", text="Your refund")


def test_the_example_policy_moves_billing_on_x_to_dm() -> None:
    policy = parse_policy((ROOT / "deploy" / "policy.example.yaml").read_text(), "example", VOCABULARY)
    assert [r.name for r in policy.private_replies] == ["account-details-in-private"]


@pytest.mark.parametrize(("old", "new", "where", "reason"), [
    ("    queues: [general]\n", "    queues: [billing]\n", "p.yaml:42 private_replies[0].queues[0]",
     "unknown queue 'billing'"),
    ("    channels: [x]\n", "    channels: [twitter]\n", "p.yaml:43 private_replies[0].channels[0]",
     "unknown channel 'twitter'"),
    ("    queues: [general]\n    channels: [x]\n    keywords: [invoice, refund]\n", "",
     "p.yaml:40 private_replies[0]", "at least one condition"),
    ("public_note: We've answered you in a private message.", "public_note: " + "x" * 201,
     "p.yaml:45 private_replies[0].public_note", "1 to 200 characters"),
    ("    reason: invoices are not for a public thread\n", "", "p.yaml:40 private_replies[0]",
     "missing key 'reason'"),
])
def test_a_bad_rule_names_file_line_and_key(old: str, new: str, where: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(MINIMAL + RULE.replace(old, new), "p.yaml", VOCABULARY)
    assert (caught.value.where, reason in str(caught.value)) == (where, True)
