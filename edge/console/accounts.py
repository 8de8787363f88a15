"""Local console accounts (guard, admin) in the gateway's SQLite database, passwords hashed with argon2id.

Local, not from the cloud: the console must let a guard in while the uplink is down. Every call opens its own
connection (like the gateway's state writes) and is meant to run in a worker thread: argon2 is deliberately
slow (tens of milliseconds) and must never run on the loop that drives the doors.

Accounts are disabled, never deleted: the audit trail keeps naming them. The site must always keep one
enabled admin, or nobody could manage accounts any more; the check and the change it guards run in one
IMMEDIATE transaction, so two admins disabling each other at the same moment cannot both succeed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlite_utils import Database

from edge.store.db import open_db

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")


class Role(StrEnum):
    GUARD = "guard"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: Role


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """One account as an admin sees it in the list."""

    username: str
    role: Role
    created_at: str
    last_login_at: str | None
    disabled_at: str | None


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """What a login attempt found: the account if the password is right; `disabled` if it is right but the
    account is disabled (then `account` is None: no session for it)."""

    account: Account | None
    disabled: bool = False


class AccountExistsError(ValueError):
    """An account with this name exists already."""


class NoSuchAccountError(LookupError):
    """No account has this name."""


class LastAdminError(ValueError):
    """The change would leave the site without an enabled admin."""


class AccountStore:
    """The console_accounts table of one database file. Blocking: call from a worker thread."""

    def __init__(self, db_path: Path, hasher: PasswordHasher | None = None) -> None:
        self.db_path = db_path
        self._hasher = hasher or PasswordHasher()
        # Verified against when the account does not exist, so that an unknown name costs as long as a wrong
        # password and the timing does not tell which names exist.
        self._dummy_hash = self._hasher.hash("menwei-no-such-account")

    def has_admin(self) -> bool:
        """True if an enabled admin exists (else the console offers the one-time setup code)."""
        with self._db() as db:
            row = db.conn.execute(
                "SELECT 1 FROM console_accounts WHERE role = 'admin' AND disabled_at IS NULL LIMIT 1"
            ).fetchone()
            return row is not None

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
                    (username, role.value, digest, _now()),
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

    def check_login(self, username: str, password: str) -> LoginCheck:
        """Verify a login and, if it succeeds, note the time as the account's last login."""
        with self._db() as db:
            row = db.conn.execute(
                "SELECT role, password_hash, disabled_at FROM console_accounts WHERE username = ?",
                (username,),
            ).fetchone()
        try:
            self._hasher.verify(row[1] if row else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return LoginCheck(None)
        if row is None:
            return LoginCheck(None)
        if row[2] is not None:
            return LoginCheck(None, disabled=True)
        with self._db() as db, db.conn:
            db.conn.execute(
                "UPDATE console_accounts SET last_login_at = ? WHERE username = ?", (_now(), username)
            )
        return LoginCheck(Account(username, Role(row[0])))

    def all_accounts(self) -> list[AccountInfo]:
        with self._db() as db:
            rows = db.conn.execute(
                "SELECT username, role, created_at, last_login_at, disabled_at FROM console_accounts"
                " ORDER BY username"
            ).fetchall()
        return [
            AccountInfo(name, Role(role), created, last, disabled)
            for name, role, created, last, disabled in rows
        ]

    def set_disabled(self, username: str, disabled: bool) -> Account:
        """Disable or enable an account (NoSuchAccountError, LastAdminError); disabling one that is disabled
        keeps its first date."""
        with self._immediate() as db:
            role = self._role(db, username)
            if disabled and role is Role.ADMIN:
                self._keep_an_admin(db, username)
            if disabled:
                db.conn.execute(
                    "UPDATE console_accounts SET disabled_at = COALESCE(disabled_at, ?) WHERE username = ?",
                    (_now(), username),
                )
            else:
                db.conn.execute(
                    "UPDATE console_accounts SET disabled_at = NULL WHERE username = ?", (username,)
                )
        return Account(username, role)

    def set_role(self, username: str, role: Role) -> Account:
        """Make an account a guard or an admin (NoSuchAccountError, LastAdminError)."""
        with self._immediate() as db:
            if self._role(db, username) is Role.ADMIN and role is not Role.ADMIN:
                self._keep_an_admin(db, username)
            db.conn.execute("UPDATE console_accounts SET role = ? WHERE username = ?", (role.value, username))
        return Account(username, role)

    def set_password(self, username: str, password: str) -> Account:
        """Replace an account's password (NoSuchAccountError)."""
        digest = self._hasher.hash(password)
        with self._immediate() as db:
            role = self._role(db, username)
            db.conn.execute(
                "UPDATE console_accounts SET password_hash = ? WHERE username = ?", (digest, username)
            )
        return Account(username, role)

    @contextmanager
    def _db(self) -> Iterator[Database]:
        db = open_db(self.db_path)
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _immediate(self) -> Iterator[Database]:
        """A write transaction taken at once: what it read stays true until it commits."""
        with self._db() as db:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.conn.execute("ROLLBACK")
                raise
            db.conn.execute("COMMIT")

    @staticmethod
    def _role(db: Database, username: str) -> Role:
        row = db.conn.execute("SELECT role FROM console_accounts WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise NoSuchAccountError(username)
        return Role(row[0])

    @staticmethod
    def _keep_an_admin(db: Database, username: str) -> None:
        others = db.conn.execute(
            "SELECT COUNT(*) FROM console_accounts WHERE role = 'admin' AND disabled_at IS NULL"
            " AND username != ?",
            (username,),
        ).fetchone()[0]
        if not others:
            raise LastAdminError(username)


def _now() -> str:
    return datetime.now(UTC).isoformat()
