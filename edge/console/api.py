"""The console's REST endpoints. Every one but login and setup needs a session; every POST with a session
also needs its CSRF token; roles decide the rest (guard: watch and open doors; admin: also lockdown and
accounts). Each action is audited on the gateway's bus, refused ones included.

Every endpoint and dependency is `async def`: they run on the gateway's loop, which owns the bus, the door
runners and the sessions; blocking work (SQLite, argon2) goes to a thread explicitly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Cookie, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edge.console.accounts import USERNAME, AccountStore, Role
from edge.console.auth import CSRF_HEADER, SESSION_COOKIE, LoginThrottle, Session, Sessions, SetupCode
from edge.console.settings import ConsoleSettings
from edge.events import ConsoleEvent
from edge.gateway import Gateway
from edge.model import DoorMode

# --- the console's live objects -----------------------------------------------------------------------------


@dataclass(slots=True)
class Console:
    gateway: Gateway
    settings: ConsoleSettings
    accounts: AccountStore
    sessions: Sessions
    throttle: LoginThrottle  # per account name
    client_throttle: LoginThrottle  # per client address
    setup: SetupCode
    setup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set when the server stops: streams end
    started_at: datetime | None = None
    started_mono: float = 0.0
    # The cloud link, once `menwei run` has started it (anything with a `connected` property), and when the
    # cloud last changed the access list or sent a command.
    cloud: Any = None
    last_downlink_at: datetime | None = None
    caches: dict[str, object] = field(default_factory=dict)  # per-console look-up indexes (api_people)

    def audit(self, action: str, by: str, ok: bool, detail: str = "", door_id: str | None = None) -> None:
        self.gateway.bus.publish(
            ConsoleEvent(
                at=self.gateway.clock.now(), action=action, by=by, ok=ok, detail=detail, door_id=door_id
            )
        )


async def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


async def current_session(
    console: ConsoleDep, request: Request, token: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None
) -> Session:
    session = console.sessions.get(token)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in")
    if request.method not in ("GET", "HEAD", "OPTIONS") and not session.csrf_ok(
        request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"missing or wrong {CSRF_HEADER} header")
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def admin_session(session: SessionDep, console: ConsoleDep) -> Session:
    if session.account.role is not Role.ADMIN:
        console.audit("forbidden", session.account.username, False, "admin only")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin only")
    return session


AdminDep = Annotated[Session, Depends(admin_session)]

# --- request and response bodies ----------------------------------------------------------------------------

Username = Annotated[str, StringConstraints(pattern=USERNAME.pattern)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(Body):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Password


class SetupBody(Body):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    username: Username
    password: Password


class OpenBody(Body):
    reason: Reason = Field(description="Why the door is opened; mandatory, kept in the audit trail.")


class ModeBody(Body):
    reason: Reason = Field(description="Why; mandatory, kept in the audit trail.")


class SessionOut(BaseModel):
    username: str
    role: Role
    csrf_token: str = Field(description=f"Send it in the {CSRF_HEADER} header of every POST.")


class DoorTile(BaseModel):
    id: str
    name: str
    mode: DoorMode
    state: str
    controller: str
    controller_online: bool


class Done(BaseModel):
    ok: Literal[True] = True


router = APIRouter(prefix="/api")


def _session_out(session: Session) -> SessionOut:
    return SessionOut(username=session.account.username, role=session.account.role, csrf_token=session.csrf)


def _set_cookie(response: Response, console: Console, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(console.settings.session_seconds),
        httponly=True,
        samesite="strict",
        secure=console.settings.secure_cookies,
        path="/",
    )


def _check_password(console: Console, password: str) -> None:
    if len(password) < console.settings.min_password_length:
        raise HTTPException(
            422,
            f"the password must have at least {console.settings.min_password_length} characters",
        )


# --- sessions -----------------------------------------------------------------------------------------------


@router.post("/setup", status_code=status.HTTP_201_CREATED)
async def setup(body: SetupBody, console: ConsoleDep, response: Response) -> SessionOut:
    """Create the first admin with the one-time setup code from the gateway's log, and log in as them."""
    _check_password(console, body.password)
    async with console.setup_lock:  # one redemption at a time: the code works once
        if not console.setup.active:
            console.audit("setup", body.username, False, "no setup code outstanding")
            raise HTTPException(status.HTTP_409_CONFLICT, "setup is done or was never offered")
        if not await asyncio.to_thread(console.setup.redeem, body.code):
            console.audit("setup", body.username, False, "wrong setup code")
            raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong setup code")
        account = await asyncio.to_thread(console.accounts.create, body.username, body.password, Role.ADMIN)
    console.audit("setup", account.username, True, "first admin created")
    session = console.sessions.open(account)
    _set_cookie(response, console, session)
    return _session_out(session)


@router.post("/login")
async def login(body: LoginBody, console: ConsoleDep, request: Request, response: Response) -> SessionOut:
    """Log in; locked out for a while after repeated failures of the account or from the client (423)."""
    name = body.username.lower()
    client = f"client:{request.client.host if request.client else 'unknown'}"
    if console.throttle.locked(name) or console.client_throttle.locked(client):
        console.audit("login", name, False, f"locked out ({client})")
        raise HTTPException(status.HTTP_423_LOCKED, "too many failed logins: try again later")
    # An admin may disable the account or change its password or role while its password is being checked
    # (in a thread): check again then, so that no session opens on what the admin just took away.
    for _ in range(3):
        generation = console.sessions.generation(name)
        check = await asyncio.to_thread(console.accounts.check_login, name, body.password)
        if console.sessions.generation(name) == generation:
            break
    else:
        console.audit("login", name, False, "account changed during login")
        raise HTTPException(status.HTTP_409_CONFLICT, "the account was just changed: try again")
    account = check.account
    if account is None:
        # A disabled account is answered like a wrong password: the answer does not tell whether the
        # password was right. The audit trail does.
        locked = console.throttle.failed(name)
        client_locked = console.client_throttle.failed(client)
        detail = "account disabled" if check.disabled else "wrong name or password"
        detail += "; account locked out" if locked else ""
        detail += f"; {client} locked out" if client_locked else ""
        console.audit("login", name, False, detail)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong name or password")
    console.throttle.succeeded(name)
    console.client_throttle.succeeded(client)
    console.audit("login", name, True)
    session = console.sessions.open(account)
    _set_cookie(response, console, session)
    return _session_out(session)


@router.post("/logout")
async def logout(session: SessionDep, console: ConsoleDep, response: Response) -> Done:
    console.sessions.close(session.token)
    console.audit("logout", session.account.username, True)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return Done()


@router.get("/session")
async def whoami(session: SessionDep) -> SessionOut:
    """The logged-in account and its CSRF token (for a page that was reloaded)."""
    return _session_out(session)


# --- doors and site -----------------------------------------------------------------------------------------


@router.get("/doors")
async def doors(_: SessionDep, console: ConsoleDep) -> list[DoorTile]:
    gw = console.gateway
    state = gw.engine.state if gw.engine is not None else None
    tiles = []
    for door in gw.site.doors.values():
        runner = gw.runners.get(door.id)
        controller = gw.devices.controllers.get(door.controller)
        tiles.append(
            DoorTile(
                id=door.id,
                name=door.name,
                mode=state.mode_of(door.id) if state is not None else door.mode,
                state=runner.machine.state.value if runner is not None else "unknown",
                controller=door.controller,
                controller_online=bool(controller is not None and controller.online),
            )
        )
    return tiles


@router.post("/doors/{door_id}/open")
async def open_door(door_id: str, body: OpenBody, session: SessionDep, console: ConsoleDep) -> Done:
    """Release a door for its unlock time (guard or admin); the reason goes into the audit trail."""
    by = f"console:{session.account.username}"
    if door_id not in console.gateway.runners:
        console.audit("open_door", session.account.username, False, f"no door {door_id!r}")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no door {door_id!r}")
    if not console.gateway.open_door(door_id, by=by, reason=body.reason):
        console.audit("open_door", session.account.username, False, "door in lockdown", door_id)
        raise HTTPException(status.HTTP_409_CONFLICT, "the door is in lockdown")
    return Done()


@router.post("/site/lockdown")
async def lockdown(body: ModeBody, session: AdminDep, console: ConsoleDep) -> Done:
    console.gateway.set_mode(DoorMode.LOCKDOWN, by=f"console:{session.account.username}", reason=body.reason)
    return Done()


@router.post("/site/normal")
async def normal(body: ModeBody, session: AdminDep, console: ConsoleDep) -> Done:
    console.gateway.set_mode(DoorMode.NORMAL, by=f"console:{session.account.username}", reason=body.reason)
    return Done()
