"""Continuation tokens: good only from the address mailed, unaltered, until their last day."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from schemas.tokens import (
    check_continuation,
    continuation_key,
    continuation_token,
    find_tokens,
    make_token,
    verify_token,
)

KEY = b"tokens-test-key"
CKEY = continuation_key(KEY)
CONVERSATION = "con_0123456789abcdef0123"
LAST = date(2026, 12, 31)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def token(address: str = "ada@example.org", last: date = LAST, key: bytes = CKEY) -> str:
    return continuation_token(CONVERSATION, address, last, key)


def later(token: str) -> str:
    conversation, day, signature = token.split(".")
    return f"{conversation}.{int(day, 16) + 1:05x}.{signature}"


def test_the_address_mailed_answering_in_time_is_verified_whatever_its_case() -> None:
    found = check_continuation(token(), "Ada@Example.ORG", NOW, CKEY)
    assert found is not None and (found.conversation_id, found.verdict) == (CONVERSATION, "verified")
    # a mail client may lower-case the plus-address; the token reads the same
    assert check_continuation(token().upper(), "ada@example.org", NOW, CKEY).verdict == "verified"  # type: ignore[union-attr]


def test_the_last_day_is_a_whole_day_in_utc() -> None:
    assert check_continuation(token(), "ada@example.org", datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
                              CKEY).verdict == "verified"  # type: ignore[union-attr]
    late = check_continuation(token(), "ada@example.org", datetime(2027, 1, 1, 0, 0, tzinfo=UTC), CKEY)
    assert late is not None and late.verdict == "expired" and "2026-12-31" in late.reason


@pytest.mark.parametrize(("alter", "verdict"), [
    (lambda t: t.replace(CONVERSATION, "con_0123456789abcdef0124"), "forged"),   # another conversation
    (later, "forged"),  # a later last day
    (lambda t: t[:-16] + ("0" if t[-16] != "0" else "1") + t[-15:], "forged"),  # the first signature
    (lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"), "other_address"),  # the address's signature
])
def test_an_altered_token_proves_nothing(alter: object, verdict: str) -> None:
    altered = alter(token())  # type: ignore[operator]
    assert altered != token()
    found = check_continuation(altered, "ada@example.org", NOW, CKEY)
    assert found is not None and found.verdict == verdict


def test_another_address_or_another_key_proves_nothing() -> None:
    other = check_continuation(token(), "eve@example.net", NOW, CKEY)
    assert other is not None and other.verdict == "other_address" and "eve@example.net" in other.reason
    forged = check_continuation(token(key=b"not-ours"), "ada@example.org", NOW, CKEY)
    assert forged is not None and forged.verdict == "forged"


@pytest.mark.parametrize("text", [None, "", "hello", make_token(CONVERSATION, KEY),
                                  "con_x.00000.0000000000000000", token() + "0", " " * 3])
def test_what_is_no_continuation_token_is_not_checked(text: str | None) -> None:
    assert check_continuation(text, "ada@example.org", NOW, CKEY) is None


def test_a_continuation_token_never_passes_for_a_conversation_token() -> None:
    assert verify_token(token(), KEY) is None and verify_token(token(), CKEY) is None
    assert find_tokens(f"support+{token()}@example.com") == []
    assert continuation_key(KEY) != KEY
