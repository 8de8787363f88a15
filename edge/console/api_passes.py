"""The console's visitor-pass endpoints: check a scanned pass (and admit its holder), register a walk-in
visitor, list the passes this gateway knows.

A check is a dry run of exactly what a reader at the door would decide: the token is verified offline
(signature, trust list, site, clock), then judged by the decision engine's pure `evaluate` (window, doors,
uses, revocation, door mode), and nothing is counted or recorded but the console's audit event. Admitting
presents the token at a reader of the door through `Gateway.present`, the same path as a scan there: one
use, a real decision event, and the door released if it is granted.

Tokens are bearer credentials: they are never logged or audited, only the pass id (when its signature
verified) or a fingerprint.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, StringConstraints

from drivers.reader import CredentialRead
from edge.console.api import Body, ConsoleDep, SessionDep
from edge.console.scan import scan
from edge.decision import AccessRequest, Decision, Reason, evaluate, refuse
from edge.gateway import Gateway
from edge.model import CredentialKind, Direction, Status, VisitorPass
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.token import is_token
from edge.passes.verify import REASONS, fingerprint
from edge.passes.walkin import WalkInPass, WalkInRequest
from edge.store.db import open_db

router = APIRouter(prefix="/api")

Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]
DoorId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Query = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]

# What a guard reads next to the verdict (the page has its own translations, keyed by the reason code).
REASON_TEXT: dict[Reason, str] = {
    Reason.GRANTED: "Valid: the holder may pass.",
    Reason.GRANTED_RESPONDER: "Valid (responder).",
    Reason.UNKNOWN_READER: "The door has no reader this gateway knows.",
    Reason.UNKNOWN_CREDENTIAL: "Unknown pass: not on this site's access list.",
    Reason.LOCKDOWN: "The site is in lockdown.",
    Reason.DOOR_LOCKED: "The door is locked.",
    Reason.PASS_REVOKED: "The pass has been revoked.",
    Reason.PASS_NOT_YET_VALID: "The pass is not valid yet.",
    Reason.PASS_EXPIRED: "The pass has expired.",
    Reason.PASS_WRONG_DOOR: "The pass is not valid for this door.",
    Reason.PASS_USED_UP: "The pass has been used up.",
    Reason.PASS_MALFORMED: "Not a readable pass (damaged or mistyped).",
    Reason.PASS_UNKNOWN_KEY: "Signed by a key this site does not trust.",
    Reason.PASS_BAD_SIGNATURE: "Invalid signature: forged or altered.",
    Reason.PASS_KEY_RETIRED: "Signed by a key that has been retired.",
    Reason.PASS_WRONG_SITE: "Issued for another site.",
    Reason.CLOCK_UNTRUSTED: "The gateway cannot trust its clock: passes are refused until it can.",
}


def reason_text(reason: Reason) -> str:
    return REASON_TEXT.get(reason, reason.value.replace("_", " ").capitalize() + ".")


class CheckBody(Body):
    token: Token = Field(description="The pass as scanned: the MW1:... text a hand-held scanner types.")
    door_id: DoorId | None = Field(default=None, description="Check it for this door (default: its first).")
    admit: bool = Field(default=False, description="Present it at door_id: uses one use, opens if valid.")


class PassInfo(BaseModel):
    id: str
    visitor: str
    host_unit: str | None
    valid_from: datetime
    valid_until: datetime
    doors: list[str]
    uses_left: int | None = Field(description="None: unlimited within its window.")


class CheckOut(BaseModel):
    valid: bool
    reason: str = Field(description="Machine code, as in decision events (granted, pass_expired, ...).")
    reason_text: str
    door_id: str | None = Field(description="The door it was judged for.")
    admitted: bool = Field(description="admit=true and the door was released.")
    pass_: PassInfo | None = Field(alias="pass", serialization_alias="pass")


class VisitorBody(Body):
    visitor: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = Field(
        description="A short label for the visitor (e.g. 'Ms. Li', 'Courier'); nothing more about them."
    )
    host_unit: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)] = Field(
        description="The unit visited, e.g. 'A-1201'; it must have an active resident."
    )
    doors: list[DoorId] | None = Field(default=None, max_length=50, description="Default: the site's.")
    hours: float | None = Field(default=None, gt=0, le=24 * 366, description="Default: the site's.")
    uses: int | None = Field(default=None, ge=1, le=1000, description="Default: the site's.")
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = Field(
        default="", description="For the audit trail (e.g. 'parcel for 1201')."
    )


class VisitorOut(BaseModel):
    pass_id: str
    token: str = Field(description="The pass itself (a bearer credential): print or show it, never log it.")
    qr_png_base64: str
    valid_from: datetime
    valid_until: datetime
    doors: list[str]
    uses: int | None


class PassRow(BaseModel):
    id: str
    visitor: str | None = Field(description="None: known here only by its id (a use or a revocation).")
    host_unit: str | None
    valid_until: datetime | None
    uses: int = Field(description="Uses counted on this site so far.")
    revoked: bool


# --- check and admit ----------------------------------------------------------------------------------------


def _reader_at(gw: Gateway, door_id: str) -> str | None:
    readers = [r for r in gw.site.readers.values() if r.door_id == door_id]
    entry = [r for r in readers if r.direction is Direction.IN]
    return (entry or readers)[0].id if readers else None


def _info(gw: Gateway, vp: VisitorPass) -> PassInfo:
    engine = gw.engine
    used = engine.state.pass_uses.get(vp.id, 0) if engine is not None else 0
    return PassInfo(
        id=vp.id,
        visitor=vp.label,
        host_unit=vp.host_unit,
        valid_from=vp.valid_from,
        valid_until=vp.valid_until,
        doors=list(vp.door_ids),
        uses_left=None if vp.max_uses is None else max(0, vp.max_uses - used),
    )


def _dry_run(gw: Gateway, token: str, door_id: str | None) -> tuple[Decision | None, VisitorPass | None, str]:
    """What a reader at the door would decide, without counting or recording anything. Also the pass (if it
    could be read and trusted) and the id to audit it by."""
    engine = gw.engine
    assert engine is not None
    now, mono = gw.clock.now(), gw.clock.monotonic()
    vp: VisitorPass | None = None
    audit_id = fingerprint(token)
    if is_token(token):
        try:
            verified = gw.passes.verifier.verify(token, now, mono)
        except PassError as err:  # refused whatever the door: judged at one of its readers, or any
            anywhere = _reader_at(gw, door_id or next(iter(gw.site.doors))) or next(iter(gw.site.readers), "")
            request = AccessRequest(anywhere, CredentialKind.PASS, err.pass_id or audit_id, now)
            return refuse(request, gw.site, REASONS[err.reason], err.pass_id), None, err.pass_id or audit_id
        vp = verified.claims.to_visitor_pass(gw.passes.skew)
        audit_id = vp.id
    else:  # a pass on the access list, by its id
        vp = engine.acl.passes.get(token)
        audit_id = vp.id if vp is not None else audit_id
    own_doors = [d for d in (vp.door_ids if vp else ()) if d in gw.site.doors]
    door: str = door_id or (own_doors[0] if own_doors else next(iter(gw.site.doors)))
    reader = _reader_at(gw, door)
    if reader is None:
        return None, vp, audit_id
    request = AccessRequest(reader, CredentialKind.PASS, vp.id if vp and is_token(token) else token, now)
    if vp is not None and vp.id in gw.passes.revoked:
        return refuse(request, gw.site, Reason.PASS_REVOKED, vp.id), vp, audit_id
    signed = vp if is_token(token) else None
    return evaluate(request, gw.site, engine.acl, engine.state, mono, engine.tz, signed), vp, audit_id


@router.post("/passes/check")
async def check_pass(body: CheckBody, session: SessionDep, console: ConsoleDep) -> CheckOut:
    """Check a scanned visitor pass without using it; with admit=true, present it at door_id (one use, a
    real decision, the door released if valid). Audited either way, by pass id, never by token."""
    gw = console.gateway
    by = session.account.username
    action = "admit_pass" if body.admit else "check_pass"
    if body.door_id is not None and body.door_id not in gw.site.doors:
        console.audit(action, by, False, f"no door {body.door_id!r}")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no door {body.door_id!r}")
    if body.admit and body.door_id is None:
        console.audit(action, by, False, "admit without a door")
        raise HTTPException(422, "admit=true needs a door_id")
    decision, vp, audit_id = _dry_run(gw, body.token, body.door_id)
    if decision is None:
        console.audit(action, by, False, f"pass {audit_id}: the door has no reader", body.door_id)
        raise HTTPException(status.HTTP_409_CONFLICT, "that door has no reader to present the pass at")
    admitted = False
    if body.admit and decision.granted:
        # The real thing, as if scanned at the door's reader: counted, recorded, the door released.
        decision = gw.present(CredentialRead(decision.reader_id, CredentialKind.PASS, body.token))
        admitted = decision.granted
    console.audit(action, by, decision.granted, f"pass {audit_id}: {decision.reason.value}", decision.door_id)
    return CheckOut(
        valid=decision.granted,
        reason=decision.reason.value,
        reason_text=reason_text(decision.reason),
        door_id=decision.door_id,
        admitted=admitted,
        **{"pass": _info(gw, vp) if vp is not None else None},
    )


# --- walk-in visitors ---------------------------------------------------------------------------------------


@router.post("/visitors", status_code=status.HTTP_201_CREATED)
async def register_visitor(body: VisitorBody, session: SessionDep, console: ConsoleDep) -> VisitorOut:
    """Register a walk-in visitor: the gateway signs a pass itself (it works without the cloud) and returns
    it with its QR code. 409 if this gateway has no walk-in key or cannot trust its clock."""
    gw = console.gateway
    by = session.account.username
    desk = gw.passes.walk_in
    if desk is None:
        console.audit("register_visitor", by, False, "walk-in passes not configured")
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "walk-in passes are not configured on this gateway: it needs its walk-in signing key "
            "(the [passes] walkin_key credential)",
        )
    request = WalkInRequest(
        host_unit=body.host_unit,
        label=body.visitor,
        door_ids=tuple(body.doors or ()),
        hours=body.hours,
        uses=body.uses,
    )
    try:
        issued: WalkInPass = desk.register(request, by=f"console:{by}")
    except PassError as err:
        console.audit("register_visitor", by, False, f"{body.host_unit}: {err}")
        code = 422 if err.reason is PassErrorReason.INVALID_REQUEST else status.HTTP_409_CONFLICT
        raise HTTPException(code, err.detail or err.reason.value) from None
    claims = issued.claims
    png = await asyncio.to_thread(issued.qr_png)
    note = f"; {body.note}" if body.note else ""
    console.audit("register_visitor", by, True, f"pass {claims.pass_id} for {claims.host_unit}{note}")
    return VisitorOut(
        pass_id=claims.pass_id,
        token=issued.token,
        qr_png_base64=base64.b64encode(png).decode("ascii"),
        valid_from=claims.not_before,
        valid_until=claims.expires,
        doors=list(claims.doors),
        uses=claims.max_uses,
    )


# --- passes known here --------------------------------------------------------------------------------------

RECENT_EVENTS = 20_000  # how far back in the event log walk-in registrations are looked for
MAX_ROWS = 50


@router.get("/passes")
async def passes(session: SessionDep, console: ConsoleDep, q: Query = "") -> list[PassRow]:
    """Passes this gateway knows (on the access list, issued here, used or revoked here), at most 50; `q`
    matches the id, the visitor label or the host unit."""
    gw = console.gateway
    engine = gw.engine
    assert engine is not None
    wanted = q.casefold()
    uses = engine.state.pass_uses
    revoked = gw.passes.revoked
    rows: dict[str, PassRow] = {}
    for record in await asyncio.to_thread(_walk_ins, gw):
        pid = str(record.get("pass", ""))
        if pid and pid not in rows:
            rows[pid] = PassRow(
                id=pid,
                visitor=str(record.get("label", "")),
                host_unit=record.get("host_unit"),
                valid_until=record.get("valid_until"),
                uses=uses.get(pid, 0),
                revoked=pid in revoked,
            )

    def matches(vp: VisitorPass) -> bool:
        return not wanted or any(wanted in (v or "").casefold() for v in (vp.id, vp.label, vp.host_unit))

    rows = {k: v for k, v in rows.items() if not wanted or _row_matches(v, wanted)}
    for vp in await scan(list(engine.acl.passes.values()), matches, MAX_ROWS):
        rows.setdefault(
            vp.id,
            PassRow(
                id=vp.id,
                visitor=vp.label,
                host_unit=vp.host_unit,
                valid_until=vp.valid_until,
                uses=uses.get(vp.id, 0),
                revoked=vp.id in revoked or vp.status is Status.REVOKED,
            ),
        )
    for pid in [*uses, *revoked]:
        if pid not in rows and (not wanted or wanted in pid.casefold()):
            rows[pid] = PassRow(
                id=pid,
                visitor=None,
                host_unit=None,
                valid_until=None,
                uses=uses.get(pid, 0),
                revoked=pid in revoked,
            )
    listed = list(rows.values())[:MAX_ROWS]
    if q:  # a search is accounted for, like one of people
        console.audit("search_passes", session.account.username, True, f"{q!r}: {len(listed)} found")
    return listed


def _row_matches(row: PassRow, wanted: str) -> bool:
    return any(wanted in (v or "").casefold() for v in (row.id, row.visitor, row.host_unit))


def _walk_ins(gw: Gateway) -> list[dict[str, Any]]:
    db = open_db(gw.db_path, synchronous=gw.config.store.synchronous)
    try:
        rows = db.conn.execute(
            "SELECT payload FROM (SELECT type, payload FROM events ORDER BY seq DESC LIMIT ?)"
            " WHERE type = 'walkin_registered'",
            (RECENT_EVENTS,),
        ).fetchall()
    finally:
        db.close()
    return [json.loads(p) for (p,) in rows]
