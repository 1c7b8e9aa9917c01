"""mt5farm.credentials (the mt5_account_credential filter): per-account credentials derived with HMAC-SHA256."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from mt5farm import credentials as c
from mt5farm.errors import FarmError


def test_the_credential_is_hmac_sha256_of_purpose_and_login_in_base64url() -> None:
    want = (
        base64.urlsafe_b64encode(hmac.new(b"fleet-base-secret-0123", b"mt5farm:api_key:5001001", hashlib.sha256).digest())
        .decode()
        .rstrip("=")
    )
    assert c.mt5_account_credential("fleet-base-secret-0123", "api_key", 5001001) == want
    assert len(want) == 43


def test_each_account_and_purpose_gets_its_own_and_the_base_rotates_them() -> None:
    seen = {
        c.mt5_account_credential(base, purpose, login)
        for base in ("base-one-0123456789", "base-two-0123456789")
        for purpose in ("api_key", "redis_password")
        for login in (5001001, 5001002)
    }
    assert len(seen) == 8


def test_a_key_list_derives_from_its_first_line_and_a_string_login_is_the_same_login() -> None:
    one = c.mt5_account_credential("first-line-key-0123\nsecond-line-key-0123\n", "api_key", "5001001")
    assert one == c.mt5_account_credential("first-line-key-0123", "api_key", 5001001)


@pytest.mark.parametrize(
    ("base", "purpose", "login", "says"),
    [
        ("", "api_key", 1, "base secret for 'api_key' is empty"),
        (None, "api_key", 1, "is empty"),
        ("base-0123456789abcdef", "API key", 1, "purpose must match"),
        ("base-0123456789abcdef", "api_key", 0, "login must be a positive integer"),
        ("base-0123456789abcdef", "api_key", True, "login must be a positive integer"),
        ("base-0123456789abcdef", "api_key", "abc", "login must be a positive integer"),
    ],
)
def test_bad_input_names_the_filter_and_never_the_secret(base: object, purpose: str, login: object, says: str) -> None:
    with pytest.raises(FarmError, match="mt5_account_credential") as raised:
        c.mt5_account_credential(base, purpose, login)
    assert says in str(raised.value)
    assert "0123456789abcdef" not in str(raised.value)


# --- scram_sha256_matches ------------------------------------------------------------------

# Made by Postgres 17 itself: CREATE ROLE ... PASSWORD 'pencil'; SELECT rolpassword FROM pg_authid.
POSTGRES_VERIFIER = (
    "SCRAM-SHA-256$4096:vYnE+sbeuCOwJoRAOSCo9w==$ka2is1oEoEq3onA3RCAJA4Zs3W9wpN9cZ67N1/mGsj0=:g9y1Qfd3FlkX2QZGWWdZYm/ehP8HVPA6VnQ0urdcitQ="
)


def test_a_postgres_scram_verifier_matches_its_password_only():
    assert c.scram_sha256_matches(POSTGRES_VERIFIER, "pencil") is True
    assert c.scram_sha256_matches(POSTGRES_VERIFIER, "pencil ") is False
    assert c.scram_sha256_matches(POSTGRES_VERIFIER, "Pencil") is False


@pytest.mark.parametrize(
    "verifier",
    [None, "", "md5" + "0" * 32, POSTGRES_VERIFIER.replace("4096", "x"), POSTGRES_VERIFIER[:-4] + "!!!=", 5001001],
)
def test_anything_but_a_scram_verifier_never_matches(verifier):
    assert c.scram_sha256_matches(verifier, "pencil") is False
