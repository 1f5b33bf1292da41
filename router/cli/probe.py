"""`switchboard probe`: one synthetic probe through every probed channel now, and the verdicts."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import msgspec

from router.probes import configured, run_round, target_of
from router.settings import Settings
from schemas.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """The `probe` command's arguments."""
    probe = sub.add_parser(
        "probe", help="send a marked message through each channel's real path and time it to routed",
        description="One probe per configured channel that offers one (or those named): a marked "
        "message sent the way a customer would, timed until the running router has routed it. "
        "Prints one JSON verdict per channel (also published on sb.probe.v1); exits 1 unless all passed.")
    probe.add_argument("--channel", action="append", default=[], dest="channels",
                       help="probe only this channel; repeat for more")
    probe.add_argument("--api-url", help="the router's HTTP API (default: SB_HTTP_HOST and SB_HTTP_PORT)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Probe, print the verdicts, and say by the exit code whether every one passed."""
    probes = configured(settings, target_of(settings, args.api_url))
    unknown = sorted(set(args.channels) - set(probes))
    if unknown or not probes:
        raise ConfigError(f"no probe for {', '.join(unknown) or 'any channel'}; probed here: "
                          f"{', '.join(sorted(probes)) or 'none'} (a channel is probed when it is "
                          "configured and its connector offers a probe)")
    verdicts = asyncio.run(run_round(settings, probes, args.channels))
    for verdict in verdicts:
        print(json.dumps(msgspec.to_builtins(verdict)))
    return 0 if all(v.kind == "passed" for v in verdicts) else 1
