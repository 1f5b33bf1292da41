"""The API channel's synthetic probe: a marked `POST /v1/messages` to our own HTTP server."""

from __future__ import annotations

import aiohttp

from connectors.api.routes import PATH
from connectors.api.settings import ApiSettings
from connectors.base import Probe, ProbeTarget
from schemas.errors import ConfigError, TransientError

__all__ = ["SENDER", "ApiProbe", "probe"]

# a sender no customer has: the reserved .invalid top-level domain (RFC 2606)
SENDER = "probe@switchboard.invalid"
TIMEOUT_SECONDS = 10.0


class ApiProbe(Probe):
    """Posts one message to the API the way an integration does."""

    def __init__(self, target: ProbeTarget) -> None:
        self.target = target

    async def send(self, probe_id: str, text: str) -> None:
        """POST the probe; anything but 202 is the reason it failed."""
        token = self.target.api_token
        if token is None:  # probe() offers no probe without one
            raise ConfigError("no API token to post the probe with (SB_API_TOKENS)")
        body = {"sender": SENDER, "text": text, "message_id": probe_id, "subject": "Switchboard probe"}
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
        url = self.target.api_url.rstrip("/") + PATH
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as http, \
                    http.post(url, json=body, headers=headers) as response:
                if response.status != 202:
                    detail = (await response.text())[:200]
                    raise TransientError(f"POST {url} answered {response.status}: {detail}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"POST {url} failed: {e!r}") from e


def probe(settings: ApiSettings, target: ProbeTarget) -> Probe | None:
    """The API channel is probed through the router's own HTTP server, with a token it accepts."""
    return ApiProbe(target) if target.api_token is not None else None
