"""The webhook signature: the provider's known answer, the public URL, ports, JSON bodies, SHA-256 keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from connectors.phone.errors import BadSignature
from connectors.phone.settings import PhoneSettings
from connectors.phone.signature import verify
from tests.emulators.twilio import sign
from tests.paths import FIXTURES

VECTOR = json.loads((FIXTURES / "phone" / "signature_vector.json").read_text())
PUBLIC = "https://support.example.com"
TOKEN = "unit-auth-token"
PARAMS = {"CallSid": "CA" + "1" * 32, "From": "+4915123456789", "To": "+4930901820"}


def settings(**more: object) -> PhoneSettings:
    return PhoneSettings.model_validate({"auth_token": TOKEN, "public_base_url": PUBLIC, **more})


def test_the_known_answer_with_the_library_and_the_emulator() -> None:
    assert RequestValidator(VECTOR["token"]).validate(VECTOR["url"], VECTOR["params"], VECTOR["signature"])
    assert sign(VECTOR["token"], VECTOR["url"], VECTOR["params"]) == VECTOR["signature"]


def test_a_good_signature_gives_the_parameters() -> None:
    raw = urlencode(PARAMS).encode()
    signed = verify(settings(), path_qs="/v1/phone/voice", raw=raw, json_body=False,
                    headers={"X-Twilio-Signature": sign(TOKEN, PUBLIC + "/v1/phone/voice", PARAMS)})
    assert not isinstance(signed, str) and signed["From"] == "+4915123456789"


def test_it_is_checked_against_the_public_url_not_the_one_behind_the_proxy() -> None:
    raw = urlencode(PARAMS).encode()
    behind_proxy = sign(TOKEN, "http://10.0.0.7:8080/v1/phone/voice", PARAMS)
    with pytest.raises(BadSignature, match=r"does not match a request to https://support\.example\.com"):
        verify(settings(), path_qs="/v1/phone/voice", raw=raw, json_body=False,
               headers={"X-Twilio-Signature": behind_proxy})


@pytest.mark.parametrize("signed_as", [PUBLIC + ":443/v1/phone/voice", PUBLIC + "/v1/phone/voice"])
def test_with_and_without_the_port(signed_as: str) -> None:
    raw = urlencode(PARAMS).encode()
    verify(settings(), path_qs="/v1/phone/voice", raw=raw, json_body=False,
           headers={"X-Twilio-Signature": sign(TOKEN, signed_as, PARAMS)})


@pytest.mark.parametrize("tamper", ["body", "missing", "token", "query"])
def test_tampered_or_missing_is_refused(tamper: str) -> None:
    raw = urlencode(PARAMS).encode()
    signature = sign("other-token" if tamper == "token" else TOKEN, PUBLIC + "/v1/phone/voice", PARAMS)
    headers = {} if tamper == "missing" else {"X-Twilio-Signature": signature}
    if tamper == "body":
        raw = raw.replace(b"%2B4915", b"%2B4916")
    path = "/v1/phone/voice?From=%2B10000000000" if tamper == "query" else "/v1/phone/voice"
    with pytest.raises(BadSignature):
        verify(settings(), path_qs=path, raw=raw, json_body=False, headers=headers)


def test_no_auth_token_refuses_everything() -> None:
    with pytest.raises(BadSignature, match="no auth token"):
        verify(settings(auth_token=""), path_qs="/v1/phone/voice", raw=b"", json_body=False,
               headers={"X-Twilio-Signature": sign("", PUBLIC + "/v1/phone/voice", {})})


def test_a_json_body_is_signed_through_its_sha256() -> None:
    body = json.dumps({"CallSid": PARAMS["CallSid"], "event": "x"})
    digest = hashlib.sha256(body.encode()).hexdigest()
    path = f"/v1/phone/voice?bodySHA256={digest}"
    good = sign(TOKEN, PUBLIC + path, {})
    assert verify(settings(), path_qs=path, raw=body.encode(), json_body=True,
                  headers={"X-Twilio-Signature": good}) == body
    with pytest.raises(BadSignature):  # same URL and signature, another body
        verify(settings(), path_qs=path, raw=body.replace("x", "y").encode(), json_body=True,
               headers={"X-Twilio-Signature": good})
    with pytest.raises(BadSignature, match="bodySHA256"):
        verify(settings(), path_qs="/v1/phone/voice", raw=body.encode(), json_body=True,
               headers={"X-Twilio-Signature": sign(TOKEN, PUBLIC + "/v1/phone/voice", {})})


def test_a_shared_key_with_sha256() -> None:
    raw = urlencode(PARAMS).encode()
    url = PUBLIC + "/v1/phone/voice"
    payload = url + "".join(k + PARAMS[k] for k in sorted(PARAMS))
    mac = hmac.new(b"shared-secret", payload.encode(), hashlib.sha256)
    signature = base64.b64encode(mac.digest()).decode()
    headers = {"X-Twilio-Signature": signature,
               "X-Twilio-Webhooks-Signature-Settings": "key=wsk_1,algorithm=HMAC_SHA256"}
    verify(settings(signing_keys={"wsk_1": "shared-secret"}), path_qs="/v1/phone/voice", raw=raw,
           json_body=False, headers=headers)
    with pytest.raises(BadSignature, match="not configured"):
        verify(settings(), path_qs="/v1/phone/voice", raw=raw, json_body=False, headers=headers)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"a=1&" * 300, b"no-equals-sign"])
def test_a_body_no_one_signed_is_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(BadSignature) as refused:
        verify(settings(), path_qs="/v1/phone/voice", raw=raw, json_body=False,
               headers={"X-Twilio-Signature": "x"})
    assert refused.value.reason
