"""The console's alarm endpoints: the alarms no guard has acknowledged yet, and acknowledging one.

The gateway records them from its own start (edge/alarms.py), console or not; this only reads the list and
acknowledges through the gateway's store."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, StringConstraints

from edge.alarms import Alarm
from edge.console.api import Body, ConsoleDep, Done, SessionDep

router = APIRouter(prefix="/api")


class AlarmOut(BaseModel):
    id: int
    at: str = Field(description="When it was first raised (ISO 8601).")
    door_id: str | None
    device_id: str | None
    kind: str = Field(description="door_forced, door_held, tamper, device_offline, outbox_overflow, ...")
    detail: str
    count: int = Field(description="How many times it was raised while open (a flapping device).")
    last_at: str = Field(description="When it was last raised.")
    cleared: bool = Field(description="The condition has ended (the alarm still wants acknowledging).")
    acknowledged: bool


class AckBody(Body):
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = Field(
        default="", description="What the guard found or did; kept in the audit trail."
    )


def _out(alarm: Alarm) -> AlarmOut:
    return AlarmOut(
        id=alarm.id,
        at=alarm.at,
        door_id=alarm.door_id,
        device_id=alarm.device_id,
        kind=alarm.kind,
        detail=alarm.detail,
        count=alarm.count,
        last_at=alarm.last_at,
        cleared=alarm.cleared,
        acknowledged=alarm.acknowledged,
    )


@router.get("/alarms")
async def alarms(_: SessionDep, console: ConsoleDep) -> list[AlarmOut]:
    """Alarms no guard has acknowledged yet, oldest first (cleared ones included until acknowledged)."""
    recorder = console.gateway.alarm_recorder
    if recorder is not None:  # every alarm published before this request is listed
        await recorder.flush()
    return [_out(a) for a in await asyncio.to_thread(console.gateway.alarms.open_alarms)]


@router.post("/alarms/{alarm_id}/ack")
async def acknowledge(alarm_id: int, body: AckBody, session: SessionDep, console: ConsoleDep) -> Done:
    """Acknowledge an alarm (guard or admin), with an optional note; audited."""
    by = session.account.username
    now = console.gateway.clock.now()
    alarm, done = await asyncio.to_thread(console.gateway.alarms.acknowledge, alarm_id, by, body.note, now)
    if alarm is None:
        console.audit("ack_alarm", by, False, f"no alarm {alarm_id}")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm {alarm_id}")
    what = f"alarm {alarm_id} ({alarm.kind})" + (f": {body.note}" if body.note else "")
    if not done:
        console.audit("ack_alarm", by, False, f"{what}: already acknowledged", alarm.door_id)
        raise HTTPException(status.HTTP_409_CONFLICT, f"alarm {alarm_id} is already acknowledged")
    console.audit("ack_alarm", by, True, what, alarm.door_id)
    return Done()
