"""The live dashboard in a real browser: numbers change as traffic flows through real processes."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from router.http.integrations import digest_hex
from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import INBOUND, ROUTED
from tests.browser import ARTEFACTS, LAPTOP, open_page
from tests.e2e.test_email import email_env
from tests.integration.email.conftest import Mailbox, make_mail
from tests.kafka_tools import publish, read_all
from tests.policies import example_policy
from tests.processes import Switchboard
from tests.receivers.smtp import Inbox

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
WAIT_MS = 60_000
NONE = "\N{EN DASH}"  # what the page shows for a number not measured yet
STANDARD_FIRST_RESPONSE = "first_response: {low: 24h, normal: 8h, high: 4h, critical: 2h}"
IN_THREE_SECONDS = "first_response: {low: 24h, normal: 3s, high: 4h, critical: 2h}"


def message(n: int) -> bytes:
    return json.dumps({"sender": f"customer{n}@example.com", "text": f"My order {n} never arrived",
                       "message_id": f"dash-{n}"}).encode()


async def kpi(page: Page, name: str, text: str) -> None:
    await expect(page.get_by_test_id(f"kpi-{name}")).to_have_text(text, timeout=WAIT_MS)


async def test_the_dashboard_follows_traffic_live(deployment: Settings, launch: Launch,
                                                  tmp_path: Path) -> None:
    # standard customers are promised an answer in 3 seconds here, so the real SLA watch breaches
    (tmp_path / "sla").mkdir()
    policy = example_policy(tmp_path / "sla", {STANDARD_FIRST_RESPONSE: IN_THREE_SECONDS})
    # a short request deadline: every stream ends within seconds and the page must reconnect
    sb = launch("run", SB_HTTP_REQUEST_SECONDS="4", SB_POLICY_FILE=str(policy))
    launch("worker", SB_POLICY_FILE=str(policy))
    errors: list[str] = []
    async with open_page() as page:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(sb.url + "/dashboard")
        await page.get_by_label("API token").fill("test-token")
        await page.get_by_role("button", name="Show").click()
        await expect(page.get_by_test_id("status")).to_contain_text("Live", timeout=WAIT_MS)
        await kpi(page, "routed", "0")
        await kpi(page, "waiting", "0")

        for n in range(3):
            status, answer = sb.post("/v1/messages", message(n))
            assert status == 202, answer
        await kpi(page, "routed", "3")
        await kpi(page, "waiting", "3")
        segments = page.get_by_test_id("segments")
        await expect(segments.get_by_role("row", name="standard api")).to_be_visible(timeout=WAIT_MS)
        queues = page.get_by_test_id("queues")
        # (a breach reassigns to the escalations queue: which queue holds them depends on the moment)
        await expect(queues.get_by_role("row", name="general")).to_be_visible(timeout=WAIT_MS)
        await expect(page.get_by_role("img", name="3 messages routed in the last hour")).to_have_count(1)
        await expect(page.get_by_test_id("connectors").get_by_role("row", name="api")).to_contain_text("3")

        # nobody answered within three seconds: the watch's breaches are on the page, in red
        await expect(page.get_by_test_id("kpi-sla")).to_have_text("0%", timeout=WAIT_MS)
        await expect(page.get_by_test_id("kpi-breaches")).not_to_have_text("0 / 0")
        await expect(page.get_by_test_id("kpi-breaches")).to_have_class("bad")

        # the team resolves one: it no longer waits
        records = await read_all(deployment, deployment.topic(ROUTED))
        # the customers' messages (each breach's reassignment is routed too, without a message)
        routed = [m for r in records if (m := decode(r.value, RoutedConversation)).message is not None]
        assert len(routed) == 3
        status, _ = sb.post(f"/v1/conversations/{routed[0].conversation_id}/resolve", b"{}")
        assert status == 202
        await kpi(page, "waiting", "2")

        # a record nobody can read: a dead letter, its reason on the page
        await publish(deployment, deployment.topic(INBOUND), [(b"k", b"\xffnot an event")])
        # (dispatch dead-letters handoffs too: no agents' tool is configured in this deployment)
        dead = page.get_by_test_id("dead-letters")
        await expect(dead).to_contain_text("not a valid InboundMessage", timeout=WAIT_MS)
        await expect(page.get_by_text("Today by stage")).to_contain_text("intake: 1")
        await expect(page.get_by_test_id("kpi-dead")).not_to_have_text("0")

        # it fits a laptop screen: nothing runs off to the side
        width = await page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= LAPTOP["width"], width
        await expect_accessible(page)
        await page.screenshot(path=str(ARTEFACTS / "dashboard.png"), full_page=True)
    assert not errors, errors


async def expect_accessible(page: Page) -> None:
    """What a screen reader needs: named charts and panels, captioned tables, headed columns."""
    found = await page.evaluate("""() => ({
        charts: [...document.querySelectorAll('svg, [role=img]')].map(e => e.getAttribute('aria-label')),
        tables: [...document.querySelectorAll('table')].map(t => Boolean(t.caption && t.caption.textContent)),
        headers: [...document.querySelectorAll('thead th')].map(th => th.getAttribute('scope')),
        sections: [...document.querySelectorAll('section')].map(s => {
            const id = s.getAttribute('aria-labelledby');
            return Boolean(id && document.getElementById(id).textContent);
        }),
        lang: document.documentElement.lang,
    })""")
    assert found["charts"] and all(found["charts"]), found["charts"]
    assert found["tables"] and all(found["tables"]), found["tables"]
    assert set(found["headers"]) == {"col"}, found["headers"]
    assert all(found["sections"]) and found["lang"] == "en", found


def test_the_data_needs_a_token_with_the_scope(launch: Launch) -> None:
    viewer = {"name": "viewer", "token_sha256": digest_hex("viewer-token"), "scopes": ["conversations:read"]}
    sb = launch("run", SB_INTEGRATIONS=json.dumps([viewer]))
    status, answer = sb.post("/v1/dashboard", b"", token=None, method="GET")
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    status, answer = sb.post("/v1/dashboard/events", b"", token="viewer-token", method="GET")
    assert (status, answer["error"]["scope"]) == (403, "dashboard:read")
    # the page itself holds no data: anyone may load it, and it runs only our own script
    with urllib.request.urlopen(sb.url + "/dashboard", timeout=5) as r:
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert b"/dashboard/dashboard.js" in r.read()
    status, view = sb.get("/v1/dashboard")
    assert status == 200
    assert {"segments", "queues", "connectors", "dead_letters", "agents", "throughput"} <= set(view)
    assert view["timezone"] == "Europe/Berlin"


async def test_mail_answered_shows_acknowledgement_and_first_reply(
        deployment: Settings, launch: Launch, stack: Settings, mailbox: Mailbox,
        smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    sb = launch("run", **email_env(stack, mailbox, port))
    async with open_page() as page:
        await page.goto(sb.url + "/dashboard")
        await page.get_by_label("API token").fill("test-token")
        await page.get_by_role("button", name="Show").click()
        email_row = page.get_by_test_id("connectors").get_by_role("row", name="email")
        await expect(email_row).to_contain_text("connected", timeout=WAIT_MS)

        await mailbox.append(make_mail("Order 1234 never arrived", message_id="<dash-1@example.org>"))
        await kpi(page, "routed", "1")
        row = page.get_by_test_id("segments").get_by_role("row", name="standard email")
        # the acknowledgement went out by SMTP: its latency is measured
        await expect(row.locator('td[data-col="ack p50"]')).not_to_have_text(NONE, timeout=WAIT_MS)
        await expect(email_row).to_contain_text("1")

        [conversation] = {r.conversation_id for r in await routed_on(deployment)}
        status, _ = sb.post(f"/v1/conversations/{conversation}/replies",
                            json.dumps({"text": "It ships today.", "author": "maria"}).encode())
        assert status == 202
        await kpi(page, "replied", "1")
        await kpi(page, "sla", "100%")
        await kpi(page, "waiting", "0")
        await expect(page.get_by_test_id("agents").get_by_role("row", name="maria")).to_contain_text("1")
        # the mailbox account the customer wrote to
        account = page.get_by_test_id("accounts").get_by_role("row", name="email:support@example.com")
        await expect(account).to_contain_text("1")
        await page.screenshot(path=str(ARTEFACTS / "dashboard-email.png"), full_page=True)
    # (the team's mailbox gets its copies too: the helpdesk webhook is not running here)
    to_ada = [m for m in inbox.messages if "ada@example.org" in str(m["To"])]
    assert len(to_ada) == 2, "the acknowledgement and maria's reply"


async def routed_on(settings: Settings) -> list[RoutedConversation]:
    return [decode(r.value, RoutedConversation) for r in await read_all(settings, settings.topic(ROUTED))]
