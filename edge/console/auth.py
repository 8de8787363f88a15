"""Who is calling: sessions, CSRF tokens, login lock-out and the one-time code that creates the first admin.

Why in memory: sessions and failure counts are worth nothing after a restart (the guard logs in again), and
keeping them out of SQLite spares the SD card a write per request. The setup code is the only way to create
the first admin, so there is no default password to forget to change; only its argon2 hash is kept, and it is
forgotten once used.

Sessions ride in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS). Every state-changing request must
also carry the session's CSRF token in the X-CSRF-Token header: a page on another origin can make the browser
send the cookie but cannot read the token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edge.clock import Clock
from edge.console.accounts import Account
from edge.console.settings import ConsoleSettings

log = logging.getLogger(__name__)

SESSION_COOKIE = "menwei_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    account: Account
    csrf: str
    expires: float  # monotonic

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


@dataclass(slots=True)
class Sessions:
    """Live sessions by token; a session ends at its lifetime or on logout."""

    clock: Clock
    lifetime: float
    _by_token: dict[str, Session] = field(default_factory=dict)
    # Bumped whenever an account's sessions are ended (disabled, password or role changed): a login whose
    # password check started before the change must not open a session after it (see api.login).
    _generation: dict[str, int] = field(default_factory=dict)

    def open(self, account: Account) -> Session:
        self._expire()
        session = Session(
            token=secrets.token_urlsafe(32),
            account=account,
            csrf=secrets.token_urlsafe(32),
            expires=self.clock.monotonic() + self.lifetime,
        )
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if token is None:
            return None
        session = self._by_token.get(token)
        if session is not None and session.expires <= self.clock.monotonic():
            del self._by_token[token]
            return None
        return session

    def close(self, token: str) -> None:
        self._by_token.pop(token, None)

    def close_account(self, username: str, keep: str | None = None) -> int:
        """End every session of `username` but the one whose token is `keep`; the number ended."""
        self._generation[username] = self._generation.get(username, 0) + 1
        ended = [t for t, s in self._by_token.items() if s.account.username == username and t != keep]
        for token in ended:
            del self._by_token[token]
        return len(ended)

    def generation(self, username: str) -> int:
        return self._generation.get(username, 0)

    def count(self, username: str) -> int:
        """Live sessions of `username`."""
        self._expire()
        return sum(1 for s in self._by_token.values() if s.account.username == username)

    def _expire(self) -> None:
        now = self.clock.monotonic()
        for token in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[token]


@dataclass(slots=True)
class LoginThrottle:
    """Counts failed logins per key (an account name, or a client address); `limit` failures within the
    window lock the key out."""

    clock: Clock
    settings: ConsoleSettings
    limit: int
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def locked(self, key: str) -> bool:
        until = self._locked_until.get(key)
        if until is None:
            return False
        if until <= self.clock.monotonic():
            del self._locked_until[key]
            return False
        return True

    def failed(self, key: str) -> bool:
        """Record a failure; True if it locked the key out."""
        now = self.clock.monotonic()
        recent = self._failures.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - self.settings.failure_window_seconds:
            recent.popleft()
        if len(recent) >= self.limit:
            self._locked_until[key] = now + self.settings.lockout_seconds
            del self._failures[key]
            return True
        return False

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def clear(self, key: str) -> None:
        """Forget the key's failures and lift its lock-out (an admin reset its password)."""
        self._failures.pop(key, None)
        self._locked_until.pop(key, None)


class SetupCode:
    """The one-time code that creates the first admin. Generated only while no admin exists; logged once."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._hash: str | None = None

    @property
    def active(self) -> bool:
        return self._hash is not None

    def issue(self) -> None:
        code = "-".join(secrets.token_hex(3) for _ in range(4))
        self._hash = self._hasher.hash(code)
        # The log is the channel: whoever can read the gateway's journal installs it.
        log.warning(
            "no console admin yet: create one with the one-time setup code %s (POST /api/setup)", code
        )

    def redeem(self, code: str) -> bool:
        """True, once, for the right code; the code is forgotten either way once it succeeds."""
        if self._hash is None:
            return False
        try:
            self._hasher.verify(self._hash, code)
        except (VerificationError, InvalidHashError):
            return False
        self._hash = None
        return True
