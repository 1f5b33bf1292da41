from __future__ import annotations

import pytest

from processors.policy.load import load_policy
from processors.policy.model import GuardRule, keywords
from processors.send import guard
from router.vocabulary import VOCABULARY
from schemas.outbound import GuardFlag
from tests.paths import ROOT

EXAMPLE = ROOT / "deploy" / "policy.example.yaml"
RULES = load_policy(EXAMPLE, VOCABULARY).guard


def found(text: str, *, resolved: bool = False) -> list[tuple[str, str, tuple[str, ...]]]:
    """The example guard's flags on `text`, as (rule, action, matched)."""
    return [(f.rule, f.action, f.matched) for f in guard.check(text, RULES, resolved=resolved)]


@pytest.mark.parametrize(("text", "flags", "verdict"), [
    ("Unfortunately company policy does not allow refunds after 30 days.",
     [("policy-quoting", "warn", ("company policy",))], "warn"),
    ("I'm afraid we are NOT ALLOWED TO change that.",
     [("policy-quoting", "warn", ("not allowed to",))], "warn"),
    ("That is not our fault, the courier lost it.", [("blame", "warn", ("not our fault",))], "warn"),
    ("You should have read the manual.", [("blame", "warn", ("you should have",))], "warn"),
    ("Please calm down, we are looking into it.", [("telling-feelings", "hold", ("calm down",))], "hold"),
    ("Relax, it will be fine.", [("telling-feelings", "hold", ("relax",))], "hold"),
    # a typographic apostrophe, as phones and Slack write it
    ("Don\u2019t be upset, we'll fix it.", [("telling-feelings", "hold", ("don\u2019t be upset",))], "hold"),
    ("Have you considered a special offer? Upgrade your plan today!",
     [("upsell-before-fix", "hold", ("special offer", "upgrade your plan"))], "hold"),
])
def test_each_rule_flags_its_phrases(text: str, flags: list[tuple[str, str, tuple[str, ...]]],
                                     verdict: str) -> None:
    assert found(text) == flags
    assert guard.verdict(guard.check(text, RULES, resolved=False)) == verdict


def test_a_flag_carries_the_rules_reason_for_the_agent() -> None:
    (flag,) = guard.check("calm down", RULES, resolved=False)
    assert flag == GuardFlag(rule="telling-feelings", action="hold", matched=("calm down",),
                             reason=RULES[2].reason)
    assert "how to feel" in flag.reason


def test_upselling_is_held_only_while_the_problem_is_unsolved() -> None:
    text = "Glad it works again! If you like, upgrade to premium for faster answers."
    assert found(text, resolved=False) == [("upsell-before-fix", "hold", ("upgrade to premium",))]
    assert found(text, resolved=True) == []
    assert guard.verdict(guard.check(text, RULES, resolved=True)) == "send"


def test_other_rules_apply_whether_resolved_or_not() -> None:
    assert found("It was your fault.", resolved=True) == [("blame", "warn", ("your fault",))]


def test_every_rule_that_matches_flags_once_with_all_its_phrases() -> None:
    text = "Calm down. Relax. Our policy is clear and it's your fault. Relax!"
    assert found(text) == [
        ("policy-quoting", "warn", ("our policy",)),
        ("blame", "warn", ("your fault",)),
        ("telling-feelings", "hold", ("calm down", "relax")),
    ]
    assert guard.verdict(guard.check(text, RULES, resolved=False)) == "hold"


@pytest.mark.parametrize("text", [
    "Your policyholder number is on the letter.",
    "Our policyholders get the renewal in May.",
    "Once that is done you can feel relaxed about the renewal.",
    "The relaxation of the rule applies from June.",
    "You can buy them at any store.",  # "buy the" is a phrase, not a prefix
    "We upgraded your plan's limits for free while we fix it.",
    "Thanks for your patience, the fix is live now.",
    "",
])
def test_no_flag_for_words_that_only_contain_a_phrase(text: str) -> None:
    assert guard.check(text, RULES, resolved=False) == ()
    assert guard.verdict(()) == "send"


def test_phrases_match_across_case_and_line_breaks() -> None:
    assert found("Per COMPANY\n   POLICY we must ask.") == [("policy-quoting", "warn", ("company policy",))]


def test_a_phrase_inside_a_word_does_not_hide_a_later_match() -> None:
    rule = GuardRule(name="blame", phrases=keywords(["not our fault", "our fault"]), action="warn",
                     reason="own it")
    flags = guard.check("cannot our fault", [rule], resolved=False)
    assert [f.matched for f in flags] == [("our fault",)]


@pytest.mark.parametrize(("actions", "verdict"), [
    ((), "send"), (("warn",), "warn"), (("warn", "warn"), "warn"),
    (("warn", "hold"), "hold"), (("hold", "warn"), "hold"), (("hold",), "hold"),
])
def test_hold_wins_over_warn(actions: tuple[str, ...], verdict: str) -> None:
    flags = [GuardFlag(rule=f"r{i}", action=a, matched=("x",), reason="r")  # type: ignore[arg-type]
             for i, a in enumerate(actions)]
    assert guard.verdict(flags) == verdict


def test_no_rules_means_nothing_is_flagged() -> None:
    assert guard.check("calm down", (), resolved=False) == ()


@pytest.mark.parametrize(("author", "agent", "warned"), [
    ("tom", "maria", True), ("maria", "maria", False), ("tom", None, False), (None, "maria", False)])
def test_a_second_agent_answering_is_warned(author: str | None, agent: str | None, warned: bool) -> None:
    flag = guard.collision(author, agent)
    assert (flag is not None) is warned
    if flag is not None:
        assert (flag.rule, flag.action, flag.matched) == (guard.COLLISION, "warn", ("maria",))
        assert flag.reason == "maria is already answering this conversation"
