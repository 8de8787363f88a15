"""Checking a visitor pass with the gate camera: the console takes the next code a QR camera reader decodes
(drivers.qr.threaded `capture_next`) and judges it exactly as POST /api/passes/check does: a dry run at the
camera's door, nothing used, no decision recorded, the door not released. The camera presents every code
after that one at its door again, as always.

One check per camera at a time (409 while one waits). The wait ends with the code, with the timeout (504), or
when the client goes away (the guard cancelled, the page closed): the capture is cancelled either way, so the
camera never stays diverted from its door. The token is never logged, audited or sent back to the page.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from drivers.qr.camera import QrCameraReader
from drivers.reader import CaptureError, CredentialRead
from edge.console.api import Body, Console, ConsoleDep, SessionDep
from edge.console.api_passes import CheckOut, DoorId, _dry_run, _info, reason_text

router = APIRouter(prefix="/api")

ACTION = "check_pass_camera"
CLIENT_CLOSED = 499  # nginx's "client closed request": the answer to a check its client gave up


class ClientGoneError(Exception):
    pass


class CameraOut(BaseModel):
    id: str = Field(description="The reader id, as in the config file.")
    door_id: str | None = Field(description="The door it watches; a check judges the pass for this door.")
    online: bool
    busy: bool = Field(description="A check is waiting for this camera's next code.")


class CameraCheckBody(Body):
    reader_id: DoorId | None = Field(
        default=None, description="The camera reader to use; default: the gateway's only one."
    )
    timeout_s: float = Field(default=15.0, ge=1, le=30, description="How long to wait for a code, seconds.")


class CameraCheckOut(CheckOut):
    reader_id: str = Field(description="The camera that read the pass.")


def cameras(console: Console) -> dict[str, QrCameraReader]:
    return {rid: r for rid, r in console.gateway.devices.readers.items() if isinstance(r, QrCameraReader)}


def _door_of(console: Console, reader_id: str) -> str | None:
    reader = console.gateway.site.readers.get(reader_id)
    return reader.door_id if reader is not None else None


@router.get("/passes/cameras")
async def list_cameras(_: SessionDep, console: ConsoleDep) -> list[CameraOut]:
    """The QR camera readers a pass can be checked with (empty: the page shows no camera button)."""
    return [
        CameraOut(id=rid, door_id=_door_of(console, rid), online=r.online, busy=r.capturing)
        for rid, r in cameras(console).items()
    ]


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the request body has been read: the next message is the end)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post("/passes/check-camera")
async def check_with_camera(
    body: CameraCheckBody, session: SessionDep, console: ConsoleDep, request: Request
) -> CameraCheckOut:
    """Check the next pass the gate camera reads, without using it (the same answer as /api/passes/check,
    plus the camera). 409 when there is no camera, several and none chosen, or one is already waiting; 404
    for an unknown reader; 503 when the camera is offline; 504 when no code was seen in time."""
    by = session.account.username
    found = cameras(console)
    rid = body.reader_id
    if rid is None:
        if len(found) != 1:
            why = "this gateway has no QR camera reader" if not found else "several cameras: choose reader_id"
            console.audit(ACTION, by, False, why)
            raise HTTPException(status.HTTP_409_CONFLICT, why)
        rid = next(iter(found))
    camera = found.get(rid)
    if camera is None:
        console.audit(ACTION, by, False, f"no QR camera reader {rid!r}")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no QR camera reader {rid!r}")
    door = _door_of(console, rid)
    if not camera.online:
        console.audit(ACTION, by, False, f"camera {rid} offline", door)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the camera {rid} is offline")
    try:
        captured = camera.capture_next()
    except CaptureError as err:
        console.audit(ACTION, by, False, str(err), door)
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None
    try:
        read = await _wait(captured, request, console.closing, body.timeout_s)
    except ClientGoneError:  # the guard cancelled or closed the page: nobody reads this answer
        console.audit(ACTION, by, False, f"camera {rid}: cancelled", door)
        raise HTTPException(CLIENT_CLOSED, "cancelled") from None
    if read is None:
        console.audit(ACTION, by, False, f"camera {rid}: no code within {body.timeout_s:g} s", door)
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, f"the camera {rid} saw no QR code within {body.timeout_s:g} s"
        )
    if isinstance(read, CaptureError):
        console.audit(ACTION, by, False, str(read), door)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(read))
    gw = console.gateway
    decision, vp, audit_id = _dry_run(gw, read.value, door)
    if decision is None:
        console.audit(ACTION, by, False, f"pass {audit_id}: the door has no reader", door)
        raise HTTPException(status.HTTP_409_CONFLICT, "the camera's door has no reader to judge the pass at")
    console.audit(
        ACTION, by, decision.granted, f"pass {audit_id}: {decision.reason.value} (camera {rid})", door
    )
    return CameraCheckOut(
        valid=decision.granted,
        reason=decision.reason.value,
        reason_text=reason_text(decision.reason),
        door_id=decision.door_id,
        admitted=False,
        reader_id=rid,
        **{"pass": _info(gw, vp) if vp is not None else None},
    )


async def _wait(
    captured: asyncio.Future[CredentialRead], request: Request, closing: asyncio.Event, seconds: float
) -> CredentialRead | CaptureError | None:
    """The captured read; None on timeout; an error if the reader or the console stopped; ClientGoneError if
    the client went away. The capture is cancelled whenever the wait does not end with its read."""
    gone: asyncio.Future[None] = asyncio.ensure_future(_disconnected(request))
    stopping: asyncio.Future[Literal[True]] = asyncio.ensure_future(closing.wait())
    waiting: set[asyncio.Future[Any]] = {captured, gone, stopping}
    try:
        done, _ = await asyncio.wait(waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if captured in done:
            error = captured.exception()
            return captured.result() if error is None else CaptureError(str(error))
        if gone in done:
            raise ClientGoneError
        if stopping in done:
            return CaptureError("the console is stopping")
        return None
    finally:
        captured.cancel()  # no-op once it has its read
        for task in (gone, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
