"""Local console accounts (guard, admin) in the gateway's SQLite database, passwords hashed with argon2id.

Local, not from the cloud: the console must let a guard in while the uplink is down. Every call opens its own
connection (like the gateway's state writes) and is meant to run in a worker thread: argon2 is deliberately
slow (tens of milliseconds) and must never run on the loop that drives the doors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edge.store.db import open_db

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")


class Role(StrEnum):
    GUARD = "guard"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: Role


class AccountExistsError(ValueError):
    """An account with this name exists already."""


class AccountStore:
    """The console_accounts table of one database file. Blocking: call from a worker thread."""

    def __init__(self, db_path: Path, hasher: PasswordHasher | None = None) -> None:
        self.db_path = db_path
        self._hasher = hasher or PasswordHasher()
        # Verified against when the account does not exist, so that an unknown name costs as long as a wrong
        # password and the timing does not tell which names exist.
        self._dummy_hash = self._hasher.hash("menwei-no-such-account")

    def has_admin(self) -> bool:
        db = open_db(self.db_path)
        try:
            row = db.conn.execute("SELECT 1 FROM console_accounts WHERE role = 'admin' LIMIT 1").fetchone()
            return row is not None
        finally:
            db.close()

    def create(self, username: str, password: str, role: Role) -> Account:
        """Add an account; AccountExistsError if the name is taken."""
        digest = self._hasher.hash(password)
        db = open_db(self.db_path)
        try:
            with db.conn:
                if db.conn.execute(
                    "SELECT 1 FROM console_accounts WHERE username = ?", (username,)
                ).fetchone():
                    raise AccountExistsError(username)
                db.conn.execute(
                    "INSERT INTO console_accounts (username, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                    (username, role.value, digest, datetime.now(UTC).isoformat()),
                )
        finally:
            db.close()
        return Account(username, role)

    def verify(self, username: str, password: str) -> Account | None:
        """The account if the password is right, else None (unknown name or wrong password alike)."""
        db = open_db(self.db_path)
        try:
            row = db.conn.execute(
                "SELECT role, password_hash FROM console_accounts WHERE username = ?", (username,)
            ).fetchone()
        finally:
            db.close()
        digest = row[1] if row else self._dummy_hash
        try:
            self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return None
        return Account(username, Role(row[0])) if row else None
