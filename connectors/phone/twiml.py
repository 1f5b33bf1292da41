"""The answer to a call, as TwiML: greet by tier and hours, then record a voicemail, then hang up.

Pure: the caller's outlook (tier, open now, when we answer or open) in, the document out.
The recording is transcribed when the settings want a transcript, so it stops at two
minutes (what Twilio transcribes). Twilio reports the recording as `completed`, or
`absent` when the caller left none, and the `<Record>` action hangs up, so the call never
loops back to the greeting. Nothing of the caller's history is ever read back: caller
ID can be spoofed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse

from connectors.phone.parse import Call
from connectors.phone.settings import PhoneSettings
from connectors.routes import Outlook

__all__ = ["PLAIN", "CallbackUrls", "answer", "greeting", "hang_up"]


@dataclass(frozen=True, slots=True)
class CallbackUrls:
    """The public URLs Twilio calls back during one call."""

    recorded: str
    recording: str
    transcription: str

    @classmethod
    def of(cls, settings: PhoneSettings, call: Call) -> CallbackUrls:
        """The channel's callback URLs under its public base URL, carrying the call's caller.

        Twilio's recording callback names only the call, not who made it; the caller rides
        in the URL, which Twilio signs with the rest, so it cannot be changed on the way.
        """
        carried = {name: value for name, value in (("From", call.caller), ("To", call.to),
                                                   ("StirVerstat", call.stir_verstat)) if value}
        query = "?" + urlencode(carried) if carried else ""
        prefix = settings.path_prefix
        return cls(recorded=settings.url(f"{prefix}/recorded{query}"),
                   recording=settings.url(f"{prefix}/recording{query}"),
                   transcription=settings.url(f"{prefix}/transcription{query}"))


# when the outlook is unknown (Redis away), nothing is promised
PLAIN = "Please leave a message after the tone and we will get back to you."


def greeting(outlook: Outlook | None, settings: PhoneSettings) -> str:
    """What the caller hears before the tone: their tier's line, then the hours' promise.

    The promise follows how the policy answers the caller's tier: a call back, or a reply.
    """
    tiers = settings.tier_greetings
    hello = tiers.get(outlook.tier if outlook else "default") or tiers.get("default") or ""
    if outlook is None:
        return f"{hello} {PLAIN}".strip()
    if outlook.reply_mode == "callback":
        template = settings.callback_open_text if outlook.open_now else settings.callback_closed_text
    else:
        template = settings.open_text if outlook.open_now else settings.closed_text
    said = template.format(expected=outlook.expected_text, opens=outlook.opens_text, tier=outlook.tier)
    return f"{hello} {said}".strip()


def answer(outlook: Outlook | None, settings: PhoneSettings, call: Call) -> str:
    """The TwiML document that answers a call."""
    urls = CallbackUrls.of(settings, call)
    response = VoiceResponse()
    response.say(greeting(outlook, settings), voice=settings.voice, language=settings.language)
    record: dict[str, object] = {}
    if settings.transcribe:
        record = {"transcribe": True, "transcribe_callback": urls.transcription}
    response.record(action=urls.recorded, method="POST", max_length=settings.max_recording_seconds,
                    timeout=settings.silence_seconds, play_beep=True, finish_on_key="#",
                    recording_status_callback=urls.recording, recording_status_callback_method="POST",
                    recording_status_callback_event="completed absent", **record)
    # reached only if the record verb ends without its action (Twilio then goes on here)
    response.hangup()
    return str(response)


def hang_up() -> str:
    """The `<Record>` action's answer: the call is over."""
    response = VoiceResponse()
    response.hangup()
    return str(response)
