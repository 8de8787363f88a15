"""The guard console: a local web API on the gateway for the guard house (issue #8).

It runs on the gateway itself so that guards keep working when the cloud link is down (docs/console.md).
Layout: `settings.py` (what the console is told), `accounts.py` (local accounts in SQLite, argon2 hashes),
`auth.py` (sessions, CSRF, lock-out, the first-admin setup code), `api.py` (sessions, doors, site mode; the
shared dependencies), `api_events.py` (event log, live feed, face snapshots) with `recent.py` (the newest
stored events in memory, older ones through one read-only connection), `api_site.py` (site, health),
`api_alarms.py` (the alarms the gateway keeps until acknowledged, edge/alarms.py), `api_passes.py` (pass
check and admit, walk-in visitors, pass list), `api_people.py` (people look-up), `scan.py` (searching the
access list without stalling the doors), `snapshots.py` (face snapshot files), `stream.py` (live events as
server-sent events), `headers.py` (security headers), `app.py` (the factory that puts them together, and the
static front end in `static/`), `server.py` (uvicorn on the gateway's loop, for `menwei run` and `menwei
demo`).
"""

from __future__ import annotations

from edge.console.app import create_app
from edge.console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "create_app"]
