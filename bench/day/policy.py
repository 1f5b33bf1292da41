"""The policy the simulated day runs: the example, with the desk's addresses and a compressed aftercare."""

from __future__ import annotations

from pathlib import Path

from router.settings import ROOT

__all__ = ["EXAMPLE", "day_policy"]

EXAMPLE = ROOT / "deploy" / "policy.example.yaml"


def day_policy(source: Path, target: Path, desk_url: str) -> Path:
    """Write `source` with the webhooks pointed at the desk and follow-ups within the day."""
    text = source.read_text()
    edits = {
        "url: http://127.0.0.1:18090/switchboard": f"url: {desk_url}/helpdesk-webhook",
        "url: http://127.0.0.1:18091/page": f"url: {desk_url}/pager-webhook",
        # one helpdesk for the general team (Slack is not part of this day): its fallback is the team mailbox
        "destinations: [helpdesk-webhook, slack-support]": "destinations: [helpdesk-webhook]",
        # a day cannot wait 24h for follow-ups: ask after 2h, close quiet ones after 8h
        "close_after: 72h": "close_after: 8h",
        "delay: 24h": "delay: 2h",
    }
    for old, new in edits.items():
        if old in text:
            text = text.replace(old, new)
    target.write_text(text)
    return target
