"""A local Twilio: the Messages API the sender calls, and a caller whose webhooks are signed as Twilio signs.

Messages API (what the twilio library sends): `POST /2010-04-01/Accounts/{sid}/Messages.json`,
HTTP basic auth with the account SID and auth token, a form with `To`, `From`, `Body`.
It answers 201 with the message resource as JSON, or Twilio's error JSON
`{"code", "message", "more_info", "status"}`: 20003 on bad credentials, 21211 an invalid
`To`, 21617 a body over 1,600 characters, and whatever a test arranged with `refuse()`
(21610 unsubscribed, 30034 unregistered sender, …); `fail()` answers bare 429/503s.

Voice webhooks: `Call` posts the parameters Twilio sends (from Twilio's documentation
of the voice request, the recording-status and the transcription callbacks) to our
edge, signed `X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + sorted name+value))`
for the *public* URL, which is what Twilio knows — computed here independently of the
twilio library that our side checks with. tests/fixtures/phone/README.md has the
provider's known answer this signer reproduces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlencode
from xml.etree import ElementTree

import aiohttp
from aiohttp import web

ACCOUNT_SID = "AC" + "5ef8732a3c49700934481addd5ce1659"
AUTH_TOKEN = "emulated-auth-token-0001"
OUR_NUMBER = "+4930901820"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
ERRORS = {
    20003: (401, "Authenticate"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    30034: (400, "Message from an Unregistered Number"),
}


def sign(token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's webhook signature: HMAC-SHA1 over the URL and the sorted parameters, base64."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def sid(prefix: str) -> str:
    """A fresh SID of a kind: CA (call), RE (recording), TR (transcription), SM (message)."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class Sent:
    """One message the emulator took."""

    sid: str
    to: str
    from_: str
    body: str


class TwilioEmulator:
    """Twilio's Messages API for one account."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[Sent] = []
        self.requests = 0
        self._refusals: dict[str, int] = {}
        self._failing: list[int] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """What the sender's `api_base_url` should be."""
        return f"http://127.0.0.1:{self.port}"

    def refuse(self, number: str, code: int) -> None:
        """Refuse every text to `number` with Twilio's error `code`."""
        self._refusals[number] = code

    def fail(self, times: int = 1, status: int = 503) -> None:
        """Answer the next `times` requests with a bare HTTP error, as an overloaded API does."""
        self._failing += [status] * times

    async def start(self) -> TwilioEmulator:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self._failing:
            status = self._failing.pop(0)
            return web.json_response({"code": 20429 if status == 429 else 20500, "message": "unavailable",
                                      "more_info": "https://www.twilio.com/docs/errors/20500",
                                      "status": status}, status=status)
        given = request.headers.get("Authorization", "").removeprefix("Basic ")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if not hmac.compare_digest(given, expected) or request.match_info["account"] != self.account_sid:
            return _error(20003)
        form = await request.post()
        to, from_, body = (str(form.get(k, "")) for k in ("To", "From", "Body"))
        if not _E164.match(to):
            return _error(21211, to=to)
        if to in self._refusals:
            return _error(self._refusals[to], to=to)
        if len(body) > 1600:
            return _error(21617)
        message = Sent(sid=sid("SM"), to=to, from_=from_, body=body)
        self.messages.append(message)
        return web.json_response(self._resource(message), status=201)

    def _resource(self, m: Sent) -> dict[str, object]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.sid}"
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": m.body,
            "date_created": now, "date_sent": None, "date_updated": now, "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": m.from_, "messaging_service_sid": None,
            "num_media": "0", "num_segments": str(max(1, -(-len(m.body) // 153))), "price": None,
            "price_unit": "USD", "sid": m.sid, "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"}, "to": m.to, "uri": f"{uri}.json",
        }


def _error(code: int, **words: str) -> web.Response:
    status, message = ERRORS[code]
    return web.json_response({"code": code, "message": message.format(**words),
                              "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
                             status=status)


@dataclass
class Call:
    """One incoming call to our edge, as Twilio makes it: each webhook signed for the public URL.

    `answer()` posts the voice request and keeps the TwiML; the recording and transcript
    callbacks then go to the URLs that TwiML named, as Twilio would call them.
    """

    edge_url: str
    public_url: str
    caller: str
    token: str = AUTH_TOKEN
    to: str = OUR_NUMBER
    stir_verstat: str | None = "TN-Validation-Passed-A"
    prefix: str = "/v1/phone"
    call_sid: str = field(default_factory=lambda: sid("CA"))
    recording_sid: str = field(default_factory=lambda: sid("RE"))
    twiml: str = ""
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def params(self, status: str = "ringing") -> dict[str, str]:
        """The parameters every voice request carries."""
        params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": self.call_sid,
                  "CallStatus": status, "Called": self.to, "Caller": self.caller, "Direction": "inbound",
                  "From": self.caller, "FromCountry": "DE", "To": self.to, "ToCountry": "DE"}
        if self.stir_verstat is not None:
            params["StirVerstat"] = self.stir_verstat
        return params

    @property
    def recording_url(self) -> str:
        """Where Twilio keeps the recording."""
        return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{self.recording_sid}"

    def recording_params(self, seconds: int = 23, status: str = "completed") -> dict[str, str]:
        """The recording-status callback's parameters (it carries no caller: only the call's SID)."""
        params = {"AccountSid": ACCOUNT_SID, "CallSid": self.call_sid, "RecordingStatus": status,
                  "RecordingSource": "RecordVerb", "RecordingChannels": "1", "RecordingTrack": "both",
                  "RecordingStartTime": format_datetime(datetime.now(UTC), usegmt=True), "ErrorCode": "0"}
        if status == "completed":
            params |= {"RecordingSid": self.recording_sid, "RecordingUrl": self.recording_url,
                       "RecordingDuration": str(seconds)}
        return params

    def transcription_params(self, text: str, status: str = "completed") -> dict[str, str]:
        """The transcription callback's parameters: the voice request's, plus the transcript's."""
        transcription_sid = sid("TR")
        return self.params("completed") | {
            "TranscriptionSid": transcription_sid, "TranscriptionText": text if status == "completed" else "",
            "TranscriptionStatus": status, "RecordingSid": self.recording_sid,
            "RecordingUrl": self.recording_url,
            "TranscriptionUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/"
                                f"Transcriptions/{transcription_sid}"}

    def named(self, attribute: str) -> str:
        """A URL the answer's <Record> named: action, recordingStatusCallback, transcribeCallback."""
        record = ElementTree.fromstring(self.twiml).find("Record")
        assert record is not None and attribute in record.attrib, f"no {attribute} in {self.twiml}"
        return record.attrib[attribute]

    async def answer(self, session: aiohttp.ClientSession, **signing: str) -> tuple[int, str]:
        """The voice request: Twilio asks our edge what to do with the call."""
        status, self.twiml = await self.post(session, self.public_url + f"{self.prefix}/voice",
                                             self.params(), **signing)
        return status, self.twiml

    async def record(self, session: aiohttp.ClientSession, seconds: int = 23,
                     status: str = "completed") -> tuple[int, str]:
        """The recording-status callback, to the URL the answer named."""
        return await self.post(session, self.named("recordingStatusCallback"),
                               self.recording_params(seconds, status))

    async def transcribe(self, session: aiohttp.ClientSession, text: str,
                         status: str = "completed") -> tuple[int, str]:
        """The transcription callback, to the URL the answer named."""
        params = self.transcription_params(text, status)
        return await self.post(session, self.named("transcribeCallback"), params)

    async def post(self, session: aiohttp.ClientSession, public: str, params: Mapping[str, str], *,
                   token: str | None = None, signed_url: str | None = None) -> tuple[int, str]:
        """POST to what Twilio knows as `public` (our edge, reached directly), signed as Twilio signs."""
        assert public.startswith(self.public_url), f"{public} is not under {self.public_url}"
        signature = sign(token or self.token, signed_url or public, params)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1",
                   "Content-Type": "application/x-www-form-urlencoded",
                   "I-Twilio-Idempotency-Token": f"{self.call_sid}-{next(self._seq)}"}
        target = self.edge_url + public.removeprefix(self.public_url)
        async with session.post(target, data=urlencode(params), headers=headers) as answer:
            return answer.status, await answer.text()
