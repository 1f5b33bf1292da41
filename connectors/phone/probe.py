"""The phone channel's synthetic probe: a voicemail through our own voice webhooks, as Twilio calls them.

It plays Twilio's part of one call against the edge: the voice request, then the
recording-status and transcription callbacks at the URLs the answer's `<Record>` named,
each signed with the auth token for the public URL (the way Twilio signs). The
transcript carries the marker. Nobody is dialled and Twilio is not charged: what is
probed is everything of ours a call goes through, the signature checks, the greeting's
outlook, the held voicemail and its settling.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from urllib.parse import urlencode
from xml.etree import ElementTree

import aiohttp
from twilio.request_validator import RequestValidator

from connectors.base import Probe, ProbeTarget
from connectors.phone.settings import PhoneSettings
from connectors.phone.signature import SIGNATURE_HEADER
from schemas.errors import TransientError

__all__ = ["CALLER", "PhoneProbe", "probe"]

# a number reserved for fiction (NANP 555-01XX): no customer calls from it
CALLER = "+12025550143"
TIMEOUT_SECONDS = 10.0


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class PhoneProbe(Probe):
    """Makes one call's webhooks to our edge, signed as Twilio signs them."""

    def __init__(self, settings: PhoneSettings, target: ProbeTarget) -> None:
        self.settings = settings
        self.local = target.api_url.rstrip("/")
        self._validator = RequestValidator(settings.token())

    async def send(self, probe_id: str, text: str) -> None:
        """Call, leave the voicemail, transcribe it; any answer but 200 is the reason it failed."""
        s = self.settings
        call = {"AccountSid": s.account_sid, "CallSid": _sid("CA"), "CallStatus": "ringing",
                "Direction": "inbound", "From": CALLER, "To": s.from_number or CALLER,
                "StirVerstat": "TN-Validation-Passed-A"}
        recording = {"RecordingSid": _sid("RE"), "RecordingUrl": s.url(f"/probe/recordings/{probe_id}")}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as http:
                twiml = await self._post(http, s.url(f"{s.path_prefix}/voice"), call)
                record = _record(twiml)
                await self._post(http, record["recordingStatusCallback"], {
                    "AccountSid": s.account_sid, "CallSid": call["CallSid"], "RecordingStatus": "completed",
                    "RecordingDuration": "4", **recording})
                await self._post(http, record["transcribeCallback"], {
                    **call, "CallStatus": "completed", "TranscriptionSid": _sid("TR"),
                    "TranscriptionStatus": "completed", "TranscriptionText": text, **recording})
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"the voice webhook did not answer: {e!r}"[:300]) from e

    async def _post(self, http: aiohttp.ClientSession, public: str, form: Mapping[str, str]) -> str:
        """POST `form` to our edge at what Twilio knows as `public`, signed for `public`."""
        base = self.settings.public_base_url
        if not public.startswith(base + "/"):
            raise TransientError(f"the answer named {public[:200]!r}, not a URL under {base}")
        headers = {SIGNATURE_HEADER: self._validator.compute_signature(public, dict(form)),
                   "Content-Type": "application/x-www-form-urlencoded"}
        async with http.post(self.local + public.removeprefix(base), data=urlencode(form),
                             headers=headers) as answer:
            body = await answer.text()
            if answer.status != 200:
                raise TransientError(f"{public} answered {answer.status}: {body[:200]}")
            return body


def _record(twiml: str) -> dict[str, str]:
    """The attributes of the answer's `<Record>`: where the call's callbacks go."""
    try:
        record = ElementTree.fromstring(twiml).find("Record")
    except ElementTree.ParseError as e:
        raise TransientError(f"the voice answer is not TwiML: {e}") from e
    wanted = ("recordingStatusCallback", "transcribeCallback")
    if record is None or any(name not in record.attrib for name in wanted):
        raise TransientError("the voice answer records no transcribed voicemail")
    return dict(record.attrib)


def probe(settings: PhoneSettings, target: ProbeTarget) -> Probe | None:
    """A probe needs the auth token (to sign as Twilio) and transcripts (to carry the marker)."""
    if not settings.token() or not settings.transcribe:
        return None
    return PhoneProbe(settings, target)
