"""Console accounts: an admin lists, creates, disables and enables accounts, changes their role and resets
their password; everyone changes their own password.

Sessions live in memory and carry the account's role as it was at login, so every change that makes a
session wrong ends it at once: disabling an account or changing its role ends all its sessions, a reset
password ends the owner's sessions, and changing one's own password ends the owner's other sessions (the
page that changed it stays logged in). The site always keeps one enabled admin (409 otherwise). Every change
is audited, refusals included; passwords never appear in the audit trail.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field

from edge.console.accounts import (
    USERNAME,
    Account,
    AccountExistsError,
    LastAdminError,
    NoSuchAccountError,
    Role,
)
from edge.console.api import AdminDep, Body, Console, ConsoleDep, Done, Password, SessionDep, Username
from edge.console.auth import Session

router = APIRouter(prefix="/api", tags=["accounts"])

AccountName = Annotated[str, Path(pattern=USERNAME.pattern, description="The account's user name.")]


class AccountBody(Body):
    username: Username
    password: Password
    role: Role


class RoleBody(Body):
    role: Role


class PasswordBody(Body):
    password: Password = Field(description="The new password.")


class OwnPasswordBody(Body):
    current_password: Password
    new_password: Password


class AccountOut(BaseModel):
    username: str
    role: Role
    created_at: str
    last_login_at: str | None = Field(description="Last successful login; null if never.")
    disabled: bool
    disabled_at: str | None
    locked_out: bool = Field(description="Locked out for now by failed logins.")
    sessions: int = Field(description="Open sessions.")


def _check_password(console: Console, action: str, by: str, subject: str, password: str) -> None:
    """422 (audited) if the password is shorter than the site's minimum."""
    minimum = console.settings.min_password_length
    if len(password) < minimum:
        console.audit(action, by, False, f"{subject}password too short")
        raise HTTPException(422, f"the password must have at least {minimum} characters")


def _refuse(console: Console, action: str, by: str, code: int, detail: str) -> HTTPException:
    console.audit(action, by, False, detail)
    return HTTPException(code, detail)


def _ended(n: int) -> str:
    return f"; {n} session(s) ended" if n else ""


@router.get("/accounts")
async def list_accounts(_: AdminDep, console: ConsoleDep) -> list[AccountOut]:
    """Every account, by name: role, when created and last logged in, disabled or locked out."""
    infos = await asyncio.to_thread(console.accounts.all_accounts)
    return [
        AccountOut(
            username=a.username,
            role=a.role,
            created_at=a.created_at,
            last_login_at=a.last_login_at,
            disabled=a.disabled_at is not None,
            disabled_at=a.disabled_at,
            locked_out=console.throttle.locked(a.username),
            sessions=console.sessions.count(a.username),
        )
        for a in infos
    ]


@router.post("/accounts", status_code=status.HTTP_201_CREATED)
async def create_account(body: AccountBody, session: AdminDep, console: ConsoleDep) -> Account:
    """Add a guard or an admin."""
    by = session.account.username
    _check_password(console, "create_account", by, f"{body.username}: ", body.password)
    try:
        account = await asyncio.to_thread(console.accounts.create, body.username, body.password, body.role)
    except AccountExistsError:
        raise _refuse(
            console, "create_account", by, status.HTTP_409_CONFLICT, f"account {body.username} exists"
        ) from None
    console.audit("create_account", by, True, f"{account.username} ({account.role.value})")
    return account


async def _set_disabled(console: Console, session: Session, username: str, disabled: bool) -> Done:
    action = "disable_account" if disabled else "enable_account"
    by = session.account.username
    try:
        await asyncio.to_thread(console.accounts.set_disabled, username, disabled)
    except NoSuchAccountError:
        raise _refuse(console, action, by, status.HTTP_404_NOT_FOUND, f"no account {username}") from None
    except LastAdminError:
        raise _refuse(
            console, action, by, status.HTTP_409_CONFLICT, f"{username} is the last enabled admin"
        ) from None
    ended = console.sessions.close_account(username) if disabled else 0
    console.audit(action, by, True, username + _ended(ended))
    return Done()


@router.post("/accounts/{username}/disable")
async def disable_account(username: AccountName, session: AdminDep, console: ConsoleDep) -> Done:
    """Disable an account: it cannot log in, and its open sessions end at once. Not the last enabled
    admin (409)."""
    return await _set_disabled(console, session, username, True)


@router.post("/accounts/{username}/enable")
async def enable_account(username: AccountName, session: AdminDep, console: ConsoleDep) -> Done:
    """Let a disabled account log in again."""
    return await _set_disabled(console, session, username, False)


@router.post("/accounts/{username}/role")
async def set_role(username: AccountName, body: RoleBody, session: AdminDep, console: ConsoleDep) -> Done:
    """Make an account a guard or an admin; its sessions end (they carry the old role). The last enabled
    admin cannot be made a guard (409)."""
    by = session.account.username
    try:
        await asyncio.to_thread(console.accounts.set_role, username, body.role)
    except NoSuchAccountError:
        raise _refuse(console, "set_role", by, status.HTTP_404_NOT_FOUND, f"no account {username}") from None
    except LastAdminError:
        raise _refuse(
            console, "set_role", by, status.HTTP_409_CONFLICT, f"{username} is the last enabled admin"
        ) from None
    ended = console.sessions.close_account(username)
    console.audit("set_role", by, True, f"{username} ({body.role.value})" + _ended(ended))
    return Done()


@router.post("/accounts/{username}/password")
async def reset_password(
    username: AccountName, body: PasswordBody, session: AdminDep, console: ConsoleDep
) -> Done:
    """Give another account a new password; its sessions end and its lock-out is lifted. An admin changes
    their own password with POST /api/me/password, which asks for the current one (409 here)."""
    by = session.account.username
    if username == by:
        raise _refuse(
            console,
            "reset_password",
            by,
            status.HTTP_409_CONFLICT,
            "change your own password with POST /api/me/password",
        )
    _check_password(console, "reset_password", by, f"{username}: ", body.password)
    try:
        await asyncio.to_thread(console.accounts.set_password, username, body.password)
    except NoSuchAccountError:
        raise _refuse(
            console, "reset_password", by, status.HTTP_404_NOT_FOUND, f"no account {username}"
        ) from None
    ended = console.sessions.close_account(username)
    console.throttle.clear(username)
    console.audit("reset_password", by, True, username + _ended(ended))
    return Done()


@router.post("/me/password")
async def change_own_password(body: OwnPasswordBody, session: SessionDep, console: ConsoleDep) -> Done:
    """Change the logged-in account's password (guard or admin). The current password is required (403 if
    wrong; failures count towards the account's lock-out, 423); the account's other sessions end."""
    me = session.account.username
    if console.throttle.locked(me):
        raise _refuse(
            console,
            "change_password",
            me,
            status.HTTP_423_LOCKED,
            "too many failed attempts: try again later",
        )
    _check_password(console, "change_password", me, "new ", body.new_password)
    if await asyncio.to_thread(console.accounts.verify, me, body.current_password) is None:
        locked = console.throttle.failed(me)
        detail = "wrong current password" + ("; account locked out" if locked else "")
        console.audit("change_password", me, False, detail)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong current password")
    console.throttle.succeeded(me)
    try:
        await asyncio.to_thread(console.accounts.set_password, me, body.new_password)
    except NoSuchAccountError:  # removed from the database underneath the session
        console.sessions.close_account(me)
        raise _refuse(console, "change_password", me, status.HTTP_404_NOT_FOUND, f"no account {me}") from None
    ended = console.sessions.close_account(me, keep=session.token)
    console.audit("change_password", me, True, _ended(ended).removeprefix("; "))
    return Done()
