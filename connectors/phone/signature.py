"""Is a webhook from Twilio? `X-Twilio-Signature` checked with the library's validator, first.

Twilio signs the URL it called — the one configured on the number, so the public base
URL, never what a proxy turned it into — followed by the form parameters sorted by name
(HMAC-SHA1 with the auth token, base64). The validator tries the URL with and without
its port, since Twilio is not consistent about it. A JSON body is signed through its
SHA-256 in the URL's `bodySHA256` parameter. A webhook signed with a SharedKey names the
key and algorithm (HMAC_SHA256 too) in `X-Twilio-Webhooks-Signature-Settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs, parse_qsl, urlsplit

from multidict import MultiDict
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from connectors.phone.errors import BadSignature
from connectors.phone.settings import PhoneSettings

__all__ = ["MAX_FIELDS", "SIGNATURE_HEADER", "SIGNATURE_SETTINGS_HEADER", "Signed", "verify"]

# Twilio's callbacks carry a few dozen parameters; more is somebody else
MAX_FIELDS = 200
Signed = MultiDict[str] | str


def _secret(settings: PhoneSettings, key_settings: str | None) -> str:
    """The secret that signed the request: a named SharedKey's, else the auth token."""
    for part in (key_settings or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == "key" and value.strip():
            secret = settings.signing_keys.get(value.strip())
            if secret is None:
                raise BadSignature(f"signed with key {value.strip()[:64]!r}, which is not configured")
            return secret.get_secret_value()
    return settings.token()


def _params(raw: bytes, json_body: bool, url: str) -> Signed:
    """What the signature covers besides the URL: the form's fields, or a JSON body's text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadSignature("the body is not UTF-8, so Twilio did not sign it") from e
    if json_body:
        if "bodySHA256" not in parse_qs(urlsplit(url).query):
            raise BadSignature("a JSON body must be signed through bodySHA256 in the URL")
        return text
    try:
        return MultiDict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                                   max_num_fields=MAX_FIELDS))
    except ValueError as e:
        raise BadSignature(f"the body is not form data Twilio signs: {str(e)[:120]}") from e


def verify(settings: PhoneSettings, *, path_qs: str, raw: bytes, json_body: bool,
           headers: Mapping[str, str]) -> Signed:
    """The request's parameters once its signature holds for the public URL; else BadSignature."""
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        raise BadSignature(f"no {SIGNATURE_HEADER} header")
    key_settings = headers.get(SIGNATURE_SETTINGS_HEADER)
    secret = _secret(settings, key_settings)
    if not secret:
        raise BadSignature("no auth token is configured, so no webhook can be verified")
    url = settings.url(path_qs)
    params = _params(raw, json_body, url)
    if not RequestValidator(secret).validate(url, params, signature, get_signature_algorithm(key_settings)):
        where = settings.url(path_qs.partition("?")[0])
        raise BadSignature(f"{SIGNATURE_HEADER} does not match a request to {where}")
    return params
