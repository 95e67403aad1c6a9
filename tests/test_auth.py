"""Which Authorization headers carry the API key."""
from __future__ import annotations

import base64

from reward_service.auth import carries_key

KEY = "s3cret:with-colon"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bearer_with_the_key_carries_it():
    assert carries_key(f"Bearer {KEY}", KEY)
    assert carries_key(f"bearer {KEY}", KEY)


def test_basic_with_the_key_as_password_carries_it_whatever_the_user_name():
    assert carries_key(basic("openrlhf", KEY), KEY)
    assert carries_key(basic("", KEY), KEY)


def test_the_key_as_basic_user_name_does_not_carry_it():
    assert not carries_key(basic(KEY, ""), KEY)


def test_wrong_missing_or_malformed_credentials_do_not_carry_it():
    for header in ("", "Bearer", "Bearer wrong", f"Token {KEY}", "Basic !!!not-base64", basic("u", "wrong"),
                   "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):
        assert not carries_key(header, KEY), header
