"""Per-account credentials derived from the site's vaulted secrets (least privilege).

Every account container must hold credentials that open only its own account: its API key,
its Redis ACL user's password, its Postgres role's password. Vaulting one secret per account
and purpose would be thousands of vault entries; instead each is derived on the controller
from one vaulted *base* secret with HMAC-SHA256 (RFC 2104):

    credential = base64url(HMAC-SHA256(base, "mt5farm:<purpose>:<login>")) without padding

43 characters from ``[A-Za-z0-9_-]`` (256 bits). Knowing one account's credential reveals
nothing about another's or about the base; rotating the base (a converge) rotates every
credential derived from it. Only the controller and the platform services that must reach
every account (Nginx, Redis, Postgres administration) ever see a base.

A pure function, used by the roles as a filter (filter_plugins/mt5_credentials.py):

    {{ mt5_api_key | mt5_account_credential('api_key', 5001001) }}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

from mt5farm.errors import FarmError

PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def mt5_account_credential(base: Any, purpose: str, login: Any) -> str:
    """The credential of ``purpose`` (e.g. ``api_key``, ``redis_password``) for ``login``.

    ``base``: the vaulted secret it derives from (text; for a multi-line key list, the
    first line). Returns 43 URL-safe characters. Raises FarmError (naming the
    filter, never the secret) on an empty base, a bad purpose or a login that is not a
    positive integer.
    """
    text = "" if base is None else str(base)
    text = (text.strip().splitlines() or [""])[0].strip()
    if not text:
        raise FarmError(f"mt5_account_credential: the base secret for {purpose!r} is empty: set it in the vault")
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        raise FarmError(f"mt5_account_credential: purpose must match {PURPOSE_RE.pattern}, got {purpose!r}")
    try:
        number = int(str(login))
    except ValueError:
        number = 0
    if isinstance(login, bool) or number <= 0:
        raise FarmError(f"mt5_account_credential: login must be a positive integer, got {login!r}")
    digest = hmac.new(text.encode(), f"mt5farm:{purpose}:{number}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


SCRAM_RE = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")


def scram_sha256_matches(verifier: Any, password: str) -> bool:
    """Whether ``password`` opens a Postgres role whose ``pg_authid.rolpassword`` is ``verifier``.

    ``verifier``: ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64), as
    Postgres 10+ stores it (docs, "pg_authid"); anything else (None, an md5 hash) is False.
    The keys are recomputed as RFC 5802 section 3 (with SHA-256, RFC 7677) defines them:
    SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, iterations), StoredKey =
    SHA256(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key").
    ``password`` is used as its UTF-8 bytes (SASLprep leaves ASCII, which derived credentials
    are, unchanged). About 3 ms at Postgres' default 4096 iterations.
    """
    match = SCRAM_RE.match(verifier) if isinstance(verifier, str) else None
    if not match:
        return False
    try:
        iterations = int(match.group(1))
        salt, stored_key, server_key = (base64.b64decode(match.group(n), validate=True) for n in (2, 3, 4))
    except ValueError:
        return False
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key) and hmac.compare_digest(
        hmac.new(salted, b"Server Key", hashlib.sha256).digest(), server_key
    )
