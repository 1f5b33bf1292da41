"""The X channel's synthetic probe: a second account of ours posts a mention of our support account.

The mention reaches us the way a customer's does (X's webhook, or our polling of
mentions) and is timed to routed. Each probe is a post X bills to the probe account, so
it runs at most every `probe.interval_seconds` (an hour by default); once routed, the
post is deleted again so the public timeline does not fill with probes.
"""

from __future__ import annotations

import asyncio
import time

from connectors.base import Probe, ProbeTarget
from connectors.twitter.budget import Budget
from connectors.twitter.client import XApi
from connectors.twitter.limits import Pacer
from connectors.twitter.settings import XProbeAccount, XSettings
from connectors.twitter.state import Shared, connect

__all__ = ["XProbe", "probe"]

# posts remembered for deletion; older ones belong to probes judged long ago
KEPT = 50


def _as_probe_account(settings: XSettings, account: XProbeAccount) -> XSettings:
    """The channel's settings with the probe account's credentials in place of ours."""
    own_app = not account.consumer_key.get_secret_value()
    return settings.model_copy(update={
        "access_token": account.access_token, "access_token_secret": account.access_token_secret,
        "consumer_key": settings.consumer_key if own_app else account.consumer_key,
        "consumer_secret": settings.consumer_secret if own_app else account.consumer_secret})


class XProbe(Probe):
    """Posts `@<our handle> <marked text>` as the probe account, and deletes it once routed."""

    def __init__(self, settings: XSettings, account: XProbeAccount) -> None:
        self.handle = settings.handle
        self.price = settings.prices.post
        self.min_interval_seconds = account.interval_seconds
        as_probe = _as_probe_account(settings, account)
        # the probe account's own limits and spend, apart from our account's
        shared = Shared(connect(settings.redis_url.get_secret_value()), f"{settings.namespace}:x:probe",
                        time.time, asyncio.sleep)
        self.api = XApi(as_probe, pacer=Pacer(shared, settings.limits, max_wait=60.0),
                        budget=Budget(shared, "probe", settings.daily_budget_usd))
        self._posts: dict[str, str] = {}

    async def send(self, probe_id: str, text: str) -> None:
        """One mention; XUnavailable, XRefused or AuthError with X's reason when it is not posted."""
        await self.api.start()  # a session per probe: they are far apart
        try:
            body = await self.api.call(
                "post", lambda c: c.create_tweet(text=f"@{self.handle} {text}", user_auth=True),
                cost=lambda _: self.price, write=True, estimate=self.price)
        finally:
            await self.api.stop()
        data = body.get("data")
        if isinstance(data, dict) and "id" in data:
            self._posts[probe_id] = str(data["id"])
            while len(self._posts) > KEPT:  # a silent probe's post is left for an operator to see
                self._posts.pop(next(iter(self._posts)))

    async def remove(self, probe_id: str) -> None:
        """Delete the probe's post: routed, it has served."""
        post = self._posts.pop(probe_id, None)
        if post is None:
            return
        await self.api.start()
        try:
            await self.api.call("delete", lambda c: c.delete_tweet(post, user_auth=True),
                                cost=lambda _: 0.0, write=True)
        finally:
            await self.api.stop()


def probe(settings: XSettings, target: ProbeTarget) -> Probe | None:
    """A probe needs the probe account's credentials (`probe` in the X settings) and our account."""
    if settings.probe is None or not settings.account_id:
        return None
    return XProbe(settings, settings.probe)
