"""Stop logging in with credentials the broker refuses (issue 12, fault 6).

Every ``initialize`` with a wrong password is a failed login at the broker, and brokers lock
accounts and ban addresses after a handful of them. Retrying with backoff (as for a lost
connection) would make ~45 attempts per 15 minutes. So an authorization failure
(``last_error`` -6, ``RES_E_AUTH_FAILED``) is counted; after ``AUTH_ATTEMPTS`` in a row the
service stops logging in and reports ``auth_failed`` until

- the password secret file changes (a converge that rotates it writes a new file: its
  identity, inode + size + modification time, differs), checked every ``AUTH_RECHECK`` s; or
- ``AUTH_RETRY_AFTER`` seconds pass since the last failure: then one attempt, and if that
  fails too, another ``AUTH_RETRY_AFTER``: at most 24 attempts a day instead of 4,000.

The count survives restarts (``STATE_DIR/login_guard.json``): a restarted container with the
same refused secret does not start three new attempts. Nothing derived from the password is
stored, only the file's identity.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Refused logins in a row before the service stops trying (brokers commonly lock an account
#: after 5 to 10 failed logins; 3 leaves the operator's own attempts room).
AUTH_ATTEMPTS = 3
#: Seconds between single attempts once stopped (one hour: 24 a day).
AUTH_RETRY_AFTER = 3600.0
#: Seconds between checks of the password file while stopped.
AUTH_RECHECK = 30.0
STATE_FILE = "login_guard.json"


def secret_identity(path: Path) -> str:
    """Inode, size and mtime of the secret file ('' when it does not exist): it changes when
    the file is rewritten, and reveals nothing about the content."""
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


@dataclass
class _Record:
    secret: str = ""
    failures: int = 0
    last_failure: float = 0.0
    last_message: str = ""


class LoginGuard:
    """Counts refused logins for the password file ``secret_file``, persisted in ``state_dir``."""

    def __init__(self, state_dir: Path, secret_file: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = state_dir / STATE_FILE
        self._secret_file = secret_file
        self._clock = clock
        self._record = self._load()

    def _load(self) -> _Record:
        try:
            data = json.loads(self._path.read_text())
            return _Record(str(data["secret"]), int(data["failures"]), float(data["last_failure"]), str(data.get("last_message", "")))
        except FileNotFoundError:
            return _Record()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable: start counting again (at worst AUTH_ATTEMPTS more attempts).
            log.warning("ignoring unreadable %s: %s", self._path, exc)
            return _Record()

    def _save(self) -> None:
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(asdict(self._record)))
            os.replace(tmp, self._path)
        except OSError as exc:  # a read-only or missing STATE_DIR: the count lives in memory
            log.warning("cannot save %s: %s", self._path, exc)

    def _secret_changed(self) -> bool:
        return self._record.failures > 0 and secret_identity(self._secret_file) != self._record.secret

    def blocked(self) -> str | None:
        """None when a login may be tried now; else the reason, for /health."""
        if self._secret_changed():
            log.info("the password secret changed: logging in again")
            self._record = _Record()
            self._save()
            return None
        if self._record.failures < AUTH_ATTEMPTS:
            return None
        wait = self._record.last_failure + AUTH_RETRY_AFTER - self._clock()
        if wait <= 0:
            return None
        return (
            f"auth_failed: the trade server refused the login {self._record.failures} times "
            f"({self._record.last_message}); not trying again until the password secret changes "
            f"or for {wait:.0f} s"
        )

    @property
    def failed(self) -> bool:
        """True once AUTH_ATTEMPTS logins in a row were refused (until one succeeds)."""
        return self._record.failures >= AUTH_ATTEMPTS

    def refused(self, message: str) -> None:
        """Record one refused login (last_error -6)."""
        self._record = _Record(secret_identity(self._secret_file), self._record.failures + 1, self._clock(), message[:200])
        self._save()
        log.warning("login refused by the trade server (%d in a row): %s", self._record.failures, message)

    def succeeded(self) -> None:
        if self._record.failures:
            self._record = _Record()
            self._save()

    def recheck_in(self) -> float:
        """Seconds to sleep while blocked before asking :meth:`blocked` again."""
        wait = self._record.last_failure + AUTH_RETRY_AFTER - self._clock()
        return max(min(AUTH_RECHECK, wait), 0.05)
