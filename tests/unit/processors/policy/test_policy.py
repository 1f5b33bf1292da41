from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from connectors.email.mailbox import MailboxDestination
from connectors.slack.settings import SlackDestination
from connectors.webhook.settings import WebhookDestination
from processors.policy.load import check, load_policy, parse_policy
from processors.policy.model import choose_queue, format_duration, keywords, parse_duration
from router.vocabulary import VOCABULARY, vocabulary
from schemas.errors import ConfigError
from tests.paths import ROOT

EXAMPLE = ROOT / "deploy" / "policy.example.yaml"
FIXTURES = ROOT / "tests" / "fixtures" / "policy"
MINIMAL = (FIXTURES / "valid_minimal.yaml").read_text()


def broken(old: str, new: str) -> ConfigError:
    """Parse the minimal policy with one edit and return the error it must raise."""
    assert old in MINIMAL, old
    with pytest.raises(ConfigError) as caught:
        parse_policy(MINIMAL.replace(old, new, 1), "p.yaml", VOCABULARY)
    return caught.value


# --- the example ---------------------------------------------------------------------


def test_example_policy_loads() -> None:
    policy = load_policy(EXAMPLE, VOCABULARY)
    assert policy.tiers_by_rank == ("enterprise", "premium", "standard")
    assert policy.tiers["premium"].first_response["normal"] == timedelta(hours=2)
    assert policy.tiers["enterprise"].calendar == "24x7"
    assert list(policy.queues) == ["social", "billing", "general", "escalations"]
    assert policy.calendars["eu-support"].timezone.key == "Europe/Berlin"
    assert [s.label for s in policy.escalations["standard"]] == ["warn", "breach", "breach", "breach+30m"]
    assert set(policy.acknowledge.templates) == {"email", "api", "x", "phone"}
    assert {"auto_reply", "mailing_list", "bounce", "spam"} <= policy.acknowledge.skip_tags


def test_check_summarises_a_valid_file() -> None:
    lines = check(EXAMPLE, VOCABULARY)
    assert lines[0].endswith("valid")
    assert any("queues (first match wins): social, billing, general, escalations" in ln for ln in lines)
    assert any("breach+30m page" in ln for ln in lines)
    # whom each channel's acknowledgements can reach: the API's go by email
    assert "acknowledgements for channels: email (email), api (email), x (xid), phone (phone)" in lines
    alone = check(EXAMPLE, vocabulary({"api", "x"}))  # no email or phone channel configured
    assert ("acknowledgements for channels: email (no one: nothing sends its replies), "
            "api (no one: nothing sends its replies), x (xid), "
            "phone (no one: nothing sends its replies)") in alone


def test_loaded_policy_is_immutable() -> None:
    policy = load_policy(EXAMPLE, VOCABULARY)
    with pytest.raises(TypeError):
        policy.tiers["gold"] = policy.tiers["premium"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.default_queue = "billing"  # type: ignore[misc]


# --- broken fixtures: file, line, dotted key -------------------------------------------

FIXTURE_ERRORS = [
    ("unknown_key", 24, "queues.general.stickyness", "unknown key 'stickyness'"),
    ("bad_duration", 8, "tiers.standard.first_response.high", "must be a duration like 2h or 30m"),
    ("missing_fallback_queue", 24, "queues.general.fallback", "unknown queue 'billing'"),
    ("missing_chain", 23, "queues.general.escalation", "unknown escalation chain 'vip'"),
    ("missing_calendar", 21, "queues.general.calendar", "unknown calendar 'us-support'"),
    ("bad_timezone", 27, "calendars.office.timezone", "unknown timezone 'Europe/Berln'"),
    ("wrong_type", 5, "tiers.standard.rank", "must be a whole number"),
    ("unknown_tier_in_rule", 18, "urgency.rules[0].tiers[0]", "unknown tier 'gold'"),
    ("missing_level", 6, "tiers.standard.first_response", "missing key 'high'"),
    ("bad_placeholder", 36, "acknowledge.templates.email.default.open", "unknown placeholder {customer}"),
    ("duplicate_queue", 24, "queues.general", "duplicate key 'general'"),
    ("overnight_hours", 28, "calendars.office.hours", "split overnight shifts"),
    ("reassign_unknown_queue", 31, "escalations.standard[0].target", "unknown queue 'escalations'"),
    ("missing_default_queue", 24, "default_queue", "unknown queue 'nowhere'"),
    ("bad_escalation_at", 31, "escalations.standard[0].at", "must be warn, breach or breach+DURATION"),
    ("sequence_for_mapping", 22, "queues.general.destinations", "must be a list"),
    ("bad_holiday", 29, "calendars.office.holidays[0]", "must be a date"),
    ("broken_yaml", 21, "", "not valid YAML"),
]


@pytest.mark.parametrize(("name", "line", "key", "reason"), FIXTURE_ERRORS,
                         ids=[f[0] for f in FIXTURE_ERRORS])
def test_broken_fixture_names_file_line_and_key(name: str, line: int, key: str, reason: str) -> None:
    path = FIXTURES / f"{name}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_policy(path, VOCABULARY)
    assert caught.value.where == f"{path}:{line} {key}".rstrip()
    assert reason in str(caught.value)


def test_the_minimal_fixture_itself_is_valid() -> None:
    assert load_policy(FIXTURES / "valid_minimal.yaml", VOCABULARY).default_queue == "general"


def test_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(FIXTURES / "nope.yaml", VOCABULARY)


# --- more rules, checked on edited text ------------------------------------------------

EDITS = [
    ("unknown top-level key", "default_queue: general\n", "default_queue: general\nroutes: {}\n",
     "p.yaml:25 routes", "unknown key 'routes'"),
    ("days are refused", "      normal: 8h\n", "      normal: 1d\n",
     "p.yaml:7 tiers.standard.first_response.normal", "must be a duration"),
    ("both effects", "      raise_to: high\n", "      raise_to: high\n      raise_by: 1\n",
     "p.yaml:15 urgency.rules[0]", "exactly one of raise_to or raise_by"),
    ("no condition", "      keywords: [outage]\n", "",
     "p.yaml:15 urgency.rules[0]", "at least one condition"),
    ("sentiment out of range", "      keywords: [outage]\n", "      sentiment_at_most: -5\n",
     "p.yaml:16 urgency.rules[0].sentiment_at_most", "between -1 and 1"),
    ("unknown level", "      raise_to: high\n", "      raise_to: urgent\n",
     "p.yaml:17 urgency.rules[0].raise_to", "unknown urgency level 'urgent'"),
    ("fallback to itself", "    escalation: standard\n", "    escalation: standard\n    fallback: general\n",
     "p.yaml:24 queues.general.fallback", "cannot be its own fallback"),
    ("overflow to itself", "    escalation: standard\n",
     "    escalation: standard\n    overflow: {above: 5, to: general}\n",
     "p.yaml:24 queues.general.overflow.to", "cannot be its own"),
    ("24x7 is built in", "  office:\n",
     "  24x7:\n    timezone: UTC\n    hours: [mon 09:00-10:00]\n  office:\n",
     "p.yaml:25 calendars", "built in"),
    ("tier calendar must exist", "    rank: 1\n", "    rank: 1\n    calendar: nights\n",
     "p.yaml:6 tiers.standard.calendar", "unknown calendar 'nights'"),
    ("bool for a flag", "    escalation: standard\n", "    escalation: standard\n    sticky: maybe\n",
     "p.yaml:24 queues.general.sticky", "must be true or false"),
    ("template tier must exist", "      default:\n", "      gold:\n",
     "p.yaml:35 acknowledge.templates.email.gold", "unknown tier 'gold'"),
    ("template needs both texts",
     '        closed: "Hi {name}, we open {opens}; expect an answer by {expected}."\n', "",
     "p.yaml:35 acknowledge.templates.email.default", "missing key 'closed'"),
    ("page needs a target", "target: lead}", "}",
     "p.yaml:31 escalations.standard[0]", "needs a target"),
    ("unknown action", "action: notify", "action: email",
     "p.yaml:31 escalations.standard[0].action", "unknown action 'email'"),
    ("repeat count", "      keywords: [outage]\n", "      repeated_contacts: {count: 1, within: 1h}\n",
     "p.yaml:16 urgency.rules[0].repeated_contacts.count", "2 or more"),
    ("duplicate rank", "urgency:\n", "  premium:\n    rank: 1\n    first_response: {normal: 1h, high: 1h}\n"
     "    next_response: {normal: 1h, high: 1h}\nurgency:\n", "p.yaml:13 tiers.premium.rank", "rank 1"),
    ("empty file", MINIMAL, "", "p.yaml:1", "empty"),
    ("overlapping hours", "mon-fri 09:00-17:00", "mon-fri 09:00-17:00, mon 12:00-13:00",
     "p.yaml:28 calendars.office.hours", "overlapping hours on mon"),
    ("bad weekday", "mon-fri 09:00-17:00", "monday 09:00-17:00",
     "p.yaml:28 calendars.office.hours", "not a weekday"),
]


@pytest.mark.parametrize(("case", "old", "new", "where", "reason"), EDITS, ids=[e[0] for e in EDITS])
def test_validation(case: str, old: str, new: str, where: str, reason: str) -> None:
    error = broken(old, new)
    assert error.where == where
    assert reason in str(error)


@pytest.mark.parametrize(("old", "new", "where"), [
    ("match: {channels: [email]}", "match: {channels: [emial]}",
     "p.yaml:20 queues.general.match.channels[0]"),
    ("      raise_to: high\n", "      raise_to: high\n      channels: [twitter]\n",
     "p.yaml:18 urgency.rules[0].channels[0]"),
    ("    email:\n", "    mail:\n", "p.yaml:34 acknowledge.templates.mail"),
])
def test_channel_names_are_checked_against_the_registry(old: str, new: str, where: str) -> None:
    text = MINIMAL.replace(old, new, 1)
    with pytest.raises(ConfigError, match="unknown channel") as caught:
        parse_policy(text, "p.yaml", VOCABULARY)
    assert caught.value.where == where


def test_a_planned_channel_may_be_named_before_it_is_registered() -> None:
    text = MINIMAL.replace("match: {channels: [email]}", "match: {channels: [pigeon]}", 1)
    assert "pigeon" not in VOCABULARY.channels
    policy = parse_policy("planned_channels: [pigeon]\n" + text, "p.yaml", VOCABULARY)
    assert policy.queues["general"].match.channels == frozenset({"pigeon"})
    with pytest.raises(ConfigError, match="already registered"):
        parse_policy("planned_channels: [email]\n" + MINIMAL, "p.yaml", VOCABULARY)


def test_example_uses_only_known_channels() -> None:
    assert load_policy(EXAMPLE, VOCABULARY).default_queue == "general"


def test_unquoted_yaml_words_stay_words() -> None:
    # YAML 1.1 reads a bare `no` (Norwegian) as false; a keyword list means the word
    text = MINIMAL.replace("keywords: [outage]", "keywords: [no, on, 'off']")
    policy = parse_policy(text, "p.yaml", VOCABULARY)
    rule = policy.urgency.rules[0]
    assert rule.keywords is not None and rule.keywords.words == ("no", "on", "off")


def test_defaults_when_optional_sections_are_missing() -> None:
    policy = parse_policy(MINIMAL, "p.yaml", VOCABULARY)
    assert policy.sla.warn_at == 0.75 and policy.sla.pause_when_waiting_on_customer
    assert policy.sticky_window == timedelta(hours=2)
    assert policy.urgency.default == "normal"
    assert policy.queues["general"].sticky and policy.queues["general"].max_transfers == 3


# --- durations and keywords --------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("2h", timedelta(hours=2)), ("30m", timedelta(minutes=30)), ("1h30m", timedelta(minutes=90)),
    ("90s", timedelta(seconds=90)), (" 4h ", timedelta(hours=4)),
])
def test_parse_duration(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "1d", "0m", "-1h", "1.5h", "30m2h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


KEYWORDS = keywords(["outage", "not working", "Störung", "panne", "c++", "日本", "Straße"])


@pytest.mark.parametrize(("text", "found"), [
    ("Total OUTAGE since noon", "outage"),
    ("outages everywhere", None),  # whole words only
    ("the app is NOT   working", "not working"),
    ("Große störung im Netz", "störung"),
    ("Störungsmeldung", None),
    ("en panne depuis ce matin", "panne"),
    ("my c++ build", "c++"),
    ("outage.", "outage"),
    ("日本 support", "日本"),
    ("nothing to see", None),
    ("STRASSE gesperrt", "strasse"),  # caseless by casefold: ß is ss
    ("foo_outage", None),
])
def test_keywords_match_whole_words_in_any_case_and_script(text: str, found: str | None) -> None:
    assert KEYWORDS.find(text) == found


# --- choosing a queue --------------------------------------------------------------------

POLICY = load_policy(EXAMPLE, VOCABULARY)


@pytest.mark.parametrize(("channel", "tier", "text", "queue", "reason"), [
    ("x", "standard", "my invoice is wrong", "social", "queue=social: channel x"),
    ("email", "premium", "please send the invoice again", "billing", "queue=billing: keyword 'invoice'"),
    ("api", "standard", "Erstattung bitte", "billing", "keyword 'erstattung'"),
    ("email", "standard", "cannot log in", "general", "queue=general: channel email"),
    ("chat", "standard", "hello", "general", "no queue matched, default queue"),
])
def test_first_matching_queue_wins(channel: str, tier: str, text: str, queue: str, reason: str) -> None:
    choice = choose_queue(POLICY, channel=channel, tier=tier, urgency="normal", text=text)
    assert choice.queue == queue
    assert reason in choice.reasons[0]


def test_keyword_choice_is_reported_for_stickiness() -> None:
    assert choose_queue(POLICY, channel="email", tier="standard", urgency="normal",
                        text="refund please").keyword == "refund"
    assert choose_queue(POLICY, channel="email", tier="standard", urgency="normal",
                        text="hi").keyword is None


def test_overflow_moves_new_work_when_backlog_is_above_threshold() -> None:
    at_limit = choose_queue(POLICY, channel="email", tier="standard", urgency="normal", text="hi",
                            backlog={"general": 200})
    over = choose_queue(POLICY, channel="email", tier="standard", urgency="normal", text="hi",
                        backlog={"general": 201})
    assert at_limit.queue == "general"
    assert over.queue == "escalations"
    assert "general backlog 201 > 200, overflow" in over.reasons[-1]


def test_fallback_when_every_destination_is_down() -> None:
    one_down = choose_queue(POLICY, channel="x", tier="standard", urgency="normal", text="hi",
                            down=frozenset({"helpdesk-webhook"}))
    assert one_down.queue == "social"
    social_down = choose_queue(POLICY, channel="x", tier="standard", urgency="normal", text="hi",
                               down=frozenset({"slack-social"}))
    assert social_down.queue == "general"
    assert "destinations of social are down" in social_down.reasons[-1]


def test_all_fallbacks_down_keeps_the_queue_for_retry() -> None:
    down = frozenset({"slack-social", "helpdesk-webhook", "slack-support"})
    choice = choose_queue(POLICY, channel="x", tier="standard", urgency="normal", text="hi", down=down)
    assert choice.queue == "social"
    assert "kept for retry" in choice.reasons[-1]


def test_min_urgency_and_tier_match() -> None:
    text = MINIMAL.replace("    match: {channels: [email]}\n",
                           "    match: {tiers: [standard], min_urgency: high}\n")
    policy = parse_policy(text, "p.yaml", VOCABULARY)
    low = choose_queue(policy, channel="email", tier="standard", urgency="normal", text="")
    high = choose_queue(policy, channel="email", tier="standard", urgency="high", text="")
    assert "no queue matched" in low.reasons[0]
    assert high.reasons[0] == "queue=general: tier standard, urgency high ≥ high"


def test_a_queue_without_match_is_never_matched_and_empty_match_takes_all() -> None:
    assert "no queue matched" in choose_queue(
        POLICY, channel="phone", tier="standard", urgency="critical", text="").reasons[0]
    policy = parse_policy(MINIMAL.replace("match: {channels: [email]}", "match: {}"), "p.yaml", VOCABULARY)
    choice = choose_queue(policy, channel="phone", tier="standard", urgency="normal", text="")
    assert choice.reasons[0] == "queue=general: matches every message"


# --- the agents' sections: destinations, reply guard, lifecycle ----------------------------

AGENTS = MINIMAL + """\
destinations:
  helpdesk:
    kind: webhook
    url: https://helpdesk.example.com/hook
    secret_env: HELPDESK_SECRET
    fallback: team-mail
  team-mail:
    kind: mailbox
    address: team@example.com
  team-slack:
    kind: slack
    channel: C0TEAM
    deadline: 10s
guard:
  - name: blame
    phrases: ["your fault", "not our fault"]
    action: warn
    reason: "Own the problem."
  - name: upsell
    phrases: ["upgrade your plan"]
    action: hold
    reason: "Fix it first."
    unresolved_only: true
lifecycle:
  close_after: 48h
  follow_up:
    delay: 24h
    templates:
      email:
        default: "Hi {name}, is {reference} solved?"
  confirm: [yes, solved]
"""


def broken_agents(old: str, new: str) -> ConfigError:
    """Parse the agents' policy with one edit and return the error it must raise."""
    assert old in AGENTS, old
    with pytest.raises(ConfigError) as caught:
        parse_policy(AGENTS.replace(old, new, 1), "p.yaml", VOCABULARY)
    return caught.value


def test_example_policy_declares_its_destinations() -> None:
    policy = load_policy(EXAMPLE, VOCABULARY)
    assert set(policy.destinations) == {"helpdesk-webhook", "slack-support", "slack-social",
                                        "billing-mailbox", "support-mailbox", "pager-webhook"}
    hook = policy.destinations["helpdesk-webhook"]
    assert (hook.kind, hook.config, hook.fallback, hook.deadline) == (
        "webhook",
        WebhookDestination(url="http://127.0.0.1:18090/switchboard", secret_env="SB_WEBHOOK_SECRET"),
        "support-mailbox", timedelta(seconds=30))
    assert policy.destinations["slack-social"].config == SlackDestination(channel="C0SOCIAL")
    assert policy.destinations["billing-mailbox"].config == MailboxDestination(
        address="billing@support.example.com")
    used = {d for q in policy.queues.values() for d in q.destinations}
    assert used <= set(policy.destinations)


def test_example_policy_has_a_reply_guard_and_a_lifecycle() -> None:
    policy = load_policy(EXAMPLE, VOCABULARY)
    assert [(r.name, r.action, r.unresolved_only) for r in policy.guard] == [
        ("policy-quoting", "warn", False), ("blame", "warn", False),
        ("telling-feelings", "hold", False), ("upsell-before-fix", "hold", True)]
    assert all(r.reason for r in policy.guard)
    life = policy.lifecycle
    assert life.close_after == timedelta(hours=72)
    assert life.follow_up is not None and life.follow_up.delay == timedelta(hours=24)
    assert {c: set(t) for c, t in life.follow_up.templates.items()} == {
        "email": {"default", "enterprise"}, "x": {"default"}}
    assert life.confirm is not None and life.confirm.find("Yes, it works now!") == "yes"
    assert life.confirm.find("Thanks, but it is still broken") is None


def test_check_summarises_the_agents_sections() -> None:
    lines = check(EXAMPLE, VOCABULARY)
    assert any(ln.startswith("destinations: helpdesk-webhook (webhook, fallback support-mailbox)")
               for ln in lines)
    guard_line = next(ln for ln in lines if ln.startswith("reply guard"))
    assert "upsell-before-fix (hold, unresolved only)" in guard_line
    assert any(ln.startswith("lifecycle: close after 72h; follow-up after 24h on email, x") for ln in lines)


def test_agents_sections_parse_into_the_model() -> None:
    policy = parse_policy(AGENTS, "p.yaml", VOCABULARY)
    slack = policy.destinations["team-slack"]
    assert (slack.kind, slack.config, slack.deadline) == (
        "slack", SlackDestination(channel="C0TEAM"), timedelta(seconds=10))
    assert policy.destinations["helpdesk"].fallback == "team-mail"
    blame, upsell = policy.guard
    assert blame.phrases.words == ("your fault", "not our fault") and not blame.unresolved_only
    assert upsell.unresolved_only and upsell.reason == "Fix it first."
    assert policy.lifecycle.close_after == timedelta(hours=48)
    assert policy.lifecycle.follow_up is not None
    assert policy.lifecycle.follow_up.templates["email"]["default"] == "Hi {name}, is {reference} solved?"
    # an unquoted yes is the word, not a boolean
    assert policy.lifecycle.confirm is not None and policy.lifecycle.confirm.words == ("yes", "solved")
    with pytest.raises(TypeError):
        policy.destinations["other"] = slack  # type: ignore[index]


def test_without_a_destinations_section_queue_destinations_are_free_form() -> None:
    policy = parse_policy(MINIMAL, "p.yaml", VOCABULARY)
    assert policy.queues["general"].destinations == ("helpdesk",)
    assert dict(policy.destinations) == {} and policy.guard == ()
    assert policy.lifecycle.close_after == timedelta(hours=72) and policy.lifecycle.follow_up is None


AGENT_EDITS = [
    ("queue names an undefined destination", "destinations: [helpdesk]", "destinations: [helpdesk, pager]",
     "p.yaml:22 queues.general.destinations[1]", "unknown destination 'pager'"),
    ("unknown destination key", "    channel: C0TEAM\n", "    channel: C0TEAM\n    token: xoxb\n",
     "p.yaml:50 destinations.team-slack.token", "unknown key 'token'"),
    ("a key of another kind", "    channel: C0TEAM\n", "    channel: C0TEAM\n    url: https://a.example.com\n",
     "p.yaml:50 destinations.team-slack.url",
     "unknown key 'url' for a slack destination; known: kind, fallback, deadline, channel"),
    ("kind is required", "    kind: slack\n", "", "p.yaml:47 destinations.team-slack", "missing key 'kind'"),
    ("unknown kind", "kind: slack", "kind: teams",
     "p.yaml:48 destinations.team-slack.kind", "unknown destination kind 'teams'"),
    ("webhook needs a url", "    url: https://helpdesk.example.com/hook\n", "",
     "p.yaml:39 destinations.helpdesk", "missing key 'url'"),
    ("url scheme", "https://helpdesk.example.com/hook", "ftp://helpdesk.example.com/hook",
     "p.yaml:41 destinations.helpdesk.url", "must be an http or https URL"),
    ("url without host", "https://helpdesk.example.com/hook", "https:///hook",
     "p.yaml:41 destinations.helpdesk.url", "must be an http or https URL"),
    ("slack needs a channel", "    channel: C0TEAM\n", "",
     "p.yaml:47 destinations.team-slack", "missing key 'channel'"),
    ("slack channel with spaces", "channel: C0TEAM", "channel: support team",
     "p.yaml:49 destinations.team-slack.channel", "Slack channel id"),
    ("mailbox address", "address: team@example.com", "address: team-at-example",
     "p.yaml:46 destinations.team-mail.address", "must be an email address"),
    ("unknown fallback", "fallback: team-mail", "fallback: pager",
     "p.yaml:43 destinations.helpdesk.fallback", "unknown destination 'pager'"),
    ("own fallback", "fallback: team-mail", "fallback: helpdesk",
     "p.yaml:43 destinations.helpdesk.fallback", "cannot be its own fallback"),
    ("two-step circle", "    address: team@example.com\n",
     "    address: team@example.com\n    fallback: helpdesk\n",
     "p.yaml:43 destinations.helpdesk.fallback", "circle: helpdesk → team-mail → helpdesk"),
    ("deadline duration", "deadline: 10s", "deadline: 10",
     "p.yaml:50 destinations.team-slack.deadline", "must be a duration"),
    ("guard rule unknown key", "    action: warn\n", "    action: warn\n    severity: 3\n",
     "p.yaml:55 guard[0].severity", "unknown key 'severity'"),
    ("guard action", "action: hold", "action: block", "p.yaml:58 guard[1].action", "unknown action 'block'"),
    ("guard reason required", '    reason: "Fix it first."\n', "",
     "p.yaml:56 guard[1]", "missing key 'reason'"),
    ("guard reason not blank", 'reason: "Fix it first."', 'reason: "  "',
     "p.yaml:59 guard[1].reason", "must tell the agent why"),
    ("guard phrases not empty", 'phrases: ["upgrade your plan"]', "phrases: []",
     "p.yaml:57 guard[1].phrases", "at least one non-empty keyword"),
    ("guard unique names", "  - name: upsell\n", "  - name: blame\n",
     "p.yaml:56 guard[1].name", "rule name 'blame' is used twice"),
    ("unresolved_only is a flag", "unresolved_only: true", "unresolved_only: sometimes",
     "p.yaml:60 guard[1].unresolved_only", "must be true or false"),
    ("lifecycle unknown key", "  close_after: 48h\n", "  close_after: 48h\n  reopen: true\n",
     "p.yaml:63 lifecycle.reopen", "unknown key 'reopen'"),
    ("close_after in days", "close_after: 48h", "close_after: 3d",
     "p.yaml:62 lifecycle.close_after", "must be a duration"),
    ("follow-up before closing", "delay: 24h", "delay: 48h",
     "p.yaml:64 lifecycle.follow_up.delay", "must be shorter than close_after (48h)"),
    ("follow-up needs a delay", "    delay: 24h\n", "",
     "p.yaml:63 lifecycle.follow_up", "missing key 'delay'"),
    ("follow-up tier", "        default: \"Hi {name}", "        gold: \"Hi {name}",
     "p.yaml:67 lifecycle.follow_up.templates.email.gold", "unknown tier 'gold'"),
    ("follow-up placeholder", "is {reference} solved", "is {reference} solved by {expected}",
     "p.yaml:67 lifecycle.follow_up.templates.email.default",
     "unknown placeholder {expected}; use name, reference"),
    ("follow-up broken brace", "is {reference} solved", "is {reference solved",
     "p.yaml:67 lifecycle.follow_up.templates.email.default", "broken placeholder"),
    ("follow-up templates not empty",
     '    templates:\n      email:\n        default: "Hi {name}, is {reference} solved?"\n',
     "    templates: {}\n", "p.yaml:65 lifecycle.follow_up.templates", "at least one channel"),
    ("confirm words not empty", "confirm: [yes, solved]", "confirm: []",
     "p.yaml:68 lifecycle.confirm", "at least one non-empty keyword"),
]


@pytest.mark.parametrize(("case", "old", "new", "where", "reason"), AGENT_EDITS,
                         ids=[e[0] for e in AGENT_EDITS])
def test_agents_validation(case: str, old: str, new: str, where: str, reason: str) -> None:
    error = broken_agents(old, new)
    assert error.where == where
    assert reason in str(error)


@pytest.mark.parametrize(("section", "where", "reason"), [
    ("destinations: [helpdesk]", "p.yaml:38 destinations", "must be a mapping"),
    ("destinations: {helpdesk: webhook}", "p.yaml:38 destinations.helpdesk", "must be a mapping"),
    ("guard: {blame: warn}", "p.yaml:38 guard", "must be a list"),
    ("lifecycle: 72h", "p.yaml:38 lifecycle", "must be a mapping"),
])
def test_agents_sections_have_their_shape(section: str, where: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        parse_policy(MINIMAL + section + "\n", "p.yaml", VOCABULARY)
    assert caught.value.where == where


@pytest.mark.parametrize(("old", "new", "where"), [
    ("https://helpdesk.example.com/hook", "https://bot:s3cret-9f8e@helpdesk.example.com/hook",
     "p.yaml:41 destinations.helpdesk.url"),
    ("secret_env: HELPDESK_SECRET", "secret_env: s3cret-9f8e", "p.yaml:42 destinations.helpdesk.secret_env"),
])
def test_a_secret_in_the_policy_is_refused_without_printing_it(old: str, new: str, where: str) -> None:
    error = broken_agents(old, new)
    assert error.where == where
    assert "environment variable" in str(error)
    assert "s3cret" not in str(error)


def test_follow_up_channels_are_checked_against_the_registry() -> None:
    error = broken_agents("      email:\n        default: \"Hi", "      mail:\n        default: \"Hi")
    assert error.where == "p.yaml:66 lifecycle.follow_up.templates.mail"
    assert "unknown channel 'mail'" in str(error)


AGENT_FIXTURES = [
    ("unknown_destination", 22, "queues.general.destinations[1]", "unknown destination 'slack-support'"),
    ("destination_fallback_cycle", 47, "destinations.team-mail.fallback",
     "circle: team-mail → team-slack → team-mail"),
    ("guard_duplicate_rule", 43, "guard[1].name", "rule name 'blame' is used twice"),
    ("follow_up_bad_placeholder", 43, "lifecycle.follow_up.templates.email.default",
     "unknown placeholder {expected}"),
]


@pytest.mark.parametrize(("name", "line", "key", "reason"), AGENT_FIXTURES,
                         ids=[f[0] for f in AGENT_FIXTURES])
def test_broken_agents_fixture_names_file_line_and_key(name: str, line: int, key: str, reason: str) -> None:
    path = FIXTURES / f"{name}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_policy(path, VOCABULARY)
    assert caught.value.where == f"{path}:{line} {key}"
    assert reason in str(caught.value)
