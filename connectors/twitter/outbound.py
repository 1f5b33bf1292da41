"""Replies to X customers: in their public thread when X allows it, else by DM or a DM invite.

The reply reference the parser gave the customer's last message says how (parse.py):
- summoned (their post @mentioned or quoted us): a public reply in the thread, if it fits
  280 weighted characters and carries no private details (an email address, a phone
  number); otherwise, or refused as not summoned, it goes by DM instead;
- not summoned (a follow-up without a mention, which X refuses to answer publicly): a DM;
- a DM: a DM back.
A DM the customer does not accept (code 349) becomes a short public reply inviting a DM
(`direct_message_deep_link`) when the thread allows one. Never a numbered self-thread.
A reply the policy marks `privately` goes by DM even when summoned, and its `public_note`
(optional: skipped once the budget is spent) is left in the thread with the DM button.

A limit that resets later than `max_wait_seconds` (a 24-hour cap, the user's or the
app's) is a `deferred` receipt with the reset as `retry_at`: the send stage sends it then.
Acknowledgements, status updates and follow-ups are optional calls, refused once the
day's budget is spent; an agent's reply is not. The first receipt after the budget is
spent carries the day's `notice` for the agents' tools.

Every refusal is the receipt's reason, for the agent: duplicate content (X refuses the
same text twice: vary it), not summoned with DMs closed, the daily budget, the plan's
usage cap. A write whose answer was lost is `uncertain`, never repeated. The receipt's
`provider_id` is the post id, or `dm:<DM event id>`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from connectors.base import Outbound
from connectors.twitter.client import XApi
from connectors.twitter.errors import XRefused, XUnavailable
from connectors.twitter.length import MAX_WEIGHTED, fits, has_url, weighted_length
from connectors.twitter.limits import Account, account_for
from connectors.twitter.parse import DM_MODE, PUBLIC_MODE, UNSUMMONED_MODE
from connectors.twitter.settings import XSettings
from schemas.errors import ConfigError
from schemas.outbound import DeliveryReceipt, DeliveryStatus, OutboundMessage

__all__ = ["XSender", "deep_link", "private_details"]

log = logging.getLogger(__name__)
_EMAIL = re.compile(r"[^\s@<>()]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# digits maybe grouped; a phone number when it has 7+ digits after a +, or 10+ without
# not inside a word: a reference such as con_37fbf12c0460654344fb is no phone number
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{5,}\d(?!\w)")


def private_details(text: str) -> str | None:
    """What in a reply must not be public (an email address, a phone number), or None."""
    if _EMAIL.search(text):
        return "an email address"
    for found in _PHONE.finditer(text):
        digits = sum(c.isdigit() for c in found.group())
        if digits >= (7 if found.group().startswith("+") else 10):
            return "a phone number"
    return None


def deep_link(account: str) -> str:
    """The link that opens a DM to our account (X shows it as a button under the post)."""
    return f"https://twitter.com/messages/compose?recipient_id={account}"


class XSender(Outbound[XSettings]):
    """Sends agents' replies as our account; the constructor does no I/O."""

    def __init__(self, settings: XSettings, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 account: Account | None = None) -> None:
        super().__init__(settings)
        if account is None:  # its own, for a clock of its own
            account = account_for(settings, clock=clock, sleep=sleep)
        self.api = XApi(settings, pacer=account.pacer, budget=account.budget)
        self._clock = clock

    async def start(self) -> None:
        """Open the client; without our account and its tokens there is nothing to send as."""
        s = self.settings
        if not s.account_id or not s.access_token.get_secret_value() or not s.consumer_key.get_secret_value():
            raise ConfigError("x: account_id, consumer_key and access_token are needed to send",
                              where="SB_X")
        await self.api.start()

    async def stop(self) -> None:
        """Close the client; safe to call twice."""
        await self.api.stop()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send one reply the way X allows; the receipt says how, or why not (or until when not)."""
        receipt = await self._outcome(message)
        try:
            refused = (receipt.reason or "").startswith("budget:")
            if await self.api.budget.notice_due(refused=refused):
                receipt = msgspec.structs.replace(receipt, notice=self.api.budget.notice())
        except XUnavailable as e:  # Redis away: the next send tells the agents instead
            log.warning("x budget notice not checked", extra={"reason": e.reason})
        return receipt

    async def _outcome(self, message: OutboundMessage) -> DeliveryReceipt:
        context = {"reply_id": message.reply_id, "conversation_id": message.conversation_id}
        try:
            provider_id, how = await self._varied(message)
        except XRefused as e:
            log.warning("x reply refused", extra={**context, "code": e.code, "reason": e.reason})
            return _receipt(message, "failed", f"{e.code}: {e.reason}")
        except XUnavailable as e:
            if e.status == 429 and e.retry_after is not None and not e.maybe_done:
                # a limit that resets at a known time (a 24-hour cap): the send stage tries then
                retry_at = datetime.fromtimestamp(self._clock() + e.retry_after, UTC)
                log.warning("x reply deferred", extra={**context, "retry_at": retry_at.isoformat()})
                return msgspec.structs.replace(_receipt(message, "deferred", e.reason), retry_at=retry_at)
            status: DeliveryStatus = "uncertain" if e.maybe_done else "failed"
            log.warning("x reply not sent", extra={**context, "status": status, "reason": e.reason})
            return _receipt(message, status, e.reason + ("; it may have gone out, not sent again"
                                                         if e.maybe_done else ""))
        log.info("x reply sent", extra={**context, "provider_id": provider_id, "how": how})
        return _receipt(message, "sent", how, provider_id)

    async def _varied(self, message: OutboundMessage) -> tuple[str, str]:
        """Deliver; a canned message of ours X refuses as a duplicate goes once more, varied."""
        try:
            return await self._deliver(message)
        except XRefused as e:
            if e.code != "duplicate" or message.kind == "agent_reply":
                raise  # an agent's own words are theirs to change: the receipt tells them
        # nothing was posted; the reply id's tail makes the text this conversation's own
        varied = msgspec.structs.replace(message, text=f"{message.text} ({message.reply_id[-4:]})")
        provider_id, how = await self._deliver(varied)
        return provider_id, how + "; varied, X refused the canned text as a duplicate"

    async def _deliver(self, message: OutboundMessage) -> tuple[str, str]:
        if message.recipient.kind != "xid":
            raise XRefused(f"{message.recipient} is not an X user id", code="not_an_x_user")
        mode = next((r for r in message.references if r.startswith("x:")),
                    UNSUMMONED_MODE if message.in_reply_to else DM_MODE)
        post = message.in_reply_to if mode == PUBLIC_MODE else None
        text = message.text
        private = private_details(text)
        optional = message.kind != "agent_reply"
        if post is not None and message.privately:
            return await self._privately(message, post, optional=optional)
        if post is not None and private:
            why = f"it has {private}, which is never posted publicly"
        elif post is not None and fits(text):
            try:
                posted = await self._post(text, post, optional=optional)
                return posted, "public reply in the customer's thread"
            except XRefused as e:
                if e.code != "not_summoned":
                    raise
                why = "X refused a public reply (not summoned)"
        elif post is not None:
            why = f"too long for a post ({weighted_length(text)}/{MAX_WEIGHTED} weighted characters)"
        elif mode == UNSUMMONED_MODE:
            why = "not summoned: X refuses a public reply"
        else:
            why = "a DM conversation"
        try:
            return await self._dm(message.recipient.value, text, optional=optional), f"DM ({why})"
        except XRefused as e:
            if e.code != "dm_closed" or post is None or why.startswith("X refused"):
                raise XRefused(f"{why}; {e.reason}", code=e.code) from e
        return await self._invite(message, post, why, optional=optional)

    async def _invite(self, message: OutboundMessage, post: str, why: str, *,
                      optional: bool) -> tuple[str, str]:
        """A short public reply with X's DM button, for a customer whose DMs are closed."""
        posted = await self._canned(self.settings.dm_invite, post, message.reply_id, optional=optional)
        return posted, f"public invite to DM ({why}; the customer's DMs are closed)"

    async def _canned(self, text: str, post: str, reply_id: str, *, optional: bool) -> str:
        """A canned public line of ours with X's DM button; refused as a duplicate, once more varied."""
        link = deep_link(self.settings.account_id)
        try:
            return await self._post(text, post, link=link, optional=optional)
        except XRefused as e:
            if e.code != "duplicate":
                raise
        # the same line went to someone else lately: this one carries the reply's tail
        return await self._post(f"{text} ({reply_id[-4:]})", post, link=link, optional=optional)

    async def _privately(self, message: OutboundMessage, post: str, *, optional: bool) -> tuple[str, str]:
        """The policy moves this answer out of the public thread: a DM, then the short public note."""
        why = f"the policy answers privately: {message.privately}"
        try:
            sent = await self._dm(message.recipient.value, message.text, optional=optional)
        except XRefused as e:
            if e.code != "dm_closed":
                raise XRefused(f"{why}; {e.reason}", code=e.code) from e
            return await self._invite(message, post, why, optional=optional)
        note = message.public_note
        if not note:
            return sent, f"DM ({why})"
        try:
            # optional: the answer is already with the customer
            await self._canned(note, post, message.reply_id, optional=True)
        except (XRefused, XUnavailable) as e:
            log.warning("x public note not posted", extra={"reply_id": message.reply_id, "reason": e.reason})
            return sent, f"DM ({why}); the public note was not posted: {e.reason}"
        return sent, f"DM ({why}); a public note in the thread says so"

    async def _post(self, text: str, reply_to: str, *, link: str | None = None, optional: bool) -> str:
        prices = self.settings.prices
        price = prices.post_with_url if has_url(text) else prices.post
        body = await self.api.call(
            "post", lambda c: c.create_tweet(text=text, in_reply_to_tweet_id=reply_to,
                                             direct_message_deep_link=link, user_auth=True),
            cost=lambda _: price, write=True, estimate=price, optional=optional)
        return str(_data(body)["id"])

    async def _dm(self, user: str, text: str, *, optional: bool) -> str:
        price = self.settings.prices.dm
        body = await self.api.call(
            "dm_send", lambda c: c.create_direct_message(participant_id=user, text=text, user_auth=True),
            cost=lambda _: price, write=True, estimate=price, optional=optional)
        return "dm:" + str(_data(body)["dm_event_id"])


def _data(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise XUnavailable(f"X answered without data: {str(body)[:200]}", maybe_done=True)
    return data


def _receipt(message: OutboundMessage, status: DeliveryStatus, reason: str | None,
             provider_id: str | None = None) -> DeliveryReceipt:
    return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                           channel=message.channel, status=status, at=datetime.now(UTC), reason=reason,
                           provider_id=provider_id, kind=message.kind, customer_id=message.customer_id)
