"""The phone channel: Twilio answers the call, we greet by tier and hours, take the voicemail and text back.

Pushed (routes.py: the voice webhook and its callbacks, signatures checked first); the
voicemail is held at the edge until its transcript comes or a deadline passes; replies
go out as texts through the twilio REST client (outbound.py).
"""

from __future__ import annotations

from connectors.phone.outbound import PhoneOutbound
from connectors.phone.parse import parse
from connectors.phone.probe import probe
from connectors.phone.routes import routes
from connectors.phone.settings import PhoneSettings
from connectors.spec import ConnectorSpec
from schemas.inbound import PhoneExtras

__all__ = ["SPEC", "PhoneOutbound", "PhoneSettings"]

SPEC = ConnectorSpec(name="phone", settings=PhoneSettings, extras=PhoneExtras, outbound=PhoneOutbound,
                     routes=routes, parse=parse, addresses=frozenset({"phone"}),
                     # texted back (SMS), or called back: the policy chooses per tier
                     reply_modes=("text", "callback"), probe=probe)
