"""The guard console: a local web API on the gateway for the guard house (issue #8).

It runs on the gateway itself so that guards keep working when the cloud link is down. Layout:
`settings.py` (what the console is told), `accounts.py` (local accounts in SQLite, argon2 hashes),
`auth.py` (sessions, CSRF, lock-out, the first-admin setup code), `api.py` (the REST endpoints),
`stream.py` (live events as server-sent events), `app.py` (the factory that puts them together).
"""

from __future__ import annotations

from edge.console.app import create_app
from edge.console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "create_app"]
