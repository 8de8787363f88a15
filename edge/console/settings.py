"""What the console is told at start: session lifetime, lock-out policy, whether cookies need HTTPS.

A plain dataclass, not the config model: the [console] section of the gateway's TOML (edge.config.
ConsoleSection, with the listen address and TLS) builds it in edge.console.server.settings_from, and tests
build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    session_seconds: float = 8 * 3600  # one guard shift
    max_failures: int = 5  # failed logins of one account before it is locked out
    # Failed logins from one client address (any names) before it is locked out: guessing across many names,
    # or locking every account out in turn, is slowed down as well.
    max_client_failures: int = 20
    failure_window_seconds: float = 15 * 60  # failures older than this are forgotten
    lockout_seconds: float = 15 * 60
    secure_cookies: bool = True  # served over HTTPS: the session cookie is never sent in clear
    min_password_length: int = 12

    def __post_init__(self) -> None:
        if self.session_seconds <= 0 or self.lockout_seconds <= 0 or self.failure_window_seconds <= 0:
            raise ValueError("console durations must be positive")
        if self.max_failures < 1 or self.max_client_failures < 1:
            raise ValueError("max_failures and max_client_failures must be at least 1")
