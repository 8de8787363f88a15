"""Alarms kept until acknowledged are recorded by the gateway itself (edge/alarms.py): from inside start(), with
no console at all, across a restart; a clearing event marks an alarm cleared without removing it, a repeat
counts up on the same row, and an acknowledged alarm that comes back opens a new one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from drivers.sim.door_controller import SimulatedDoorController
from edge.alarms import Alarm, AlarmStore
from edge.clock import ManualClock
from edge.devices import build_devices
from edge.events import AlarmEvent, AlarmKind, DoorState
from edge.gateway import Gateway
from tests.demo_site import demo_config

ROOT = Path(__file__).resolve().parents[2]


def controller(gw: Gateway) -> SimulatedDoorController:
    c = gw.devices.controllers["sim-1"]
    assert isinstance(c, SimulatedDoorController)
    return c


def force_open(gw: Gateway, door_id: str, is_open: bool) -> None:
    door = gw.site.doors[door_id]
    assert door.contact_input is not None
    controller(gw).set_input(door.contact_input, is_open)


def summary(alarms: list[Alarm]) -> list[tuple[str, str | None, str | None, int, bool]]:
    return [(a.kind, a.door_id, a.device_id, a.count, a.cleared) for a in alarms]


async def test_a_gateway_without_a_console_records_its_alarms(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    assert cfg.console is None
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        force_open(gw, "side-door", True)
        assert gw.runners["side-door"].machine.state is DoorState.FORCED
        assert gw.alarm_recorder is not None
        await gw.alarm_recorder.flush()
        assert summary(gw.alarms.open_alarms()) == [
            ("door_forced", "side-door", None, 1, False)
        ]  # still open
        force_open(gw, "side-door", False)  # closed again: cleared, but it stays until acknowledged
        controller(gw).go_offline("bus fault")
        force_open(
            gw, "side-door", True
        )  # forced a second time before anyone looked: counts up, active again
        controller(gw).come_back()  # back online: cleared
    finally:
        await gw.stop()  # writes what is queued
    alarms = AlarmStore(gw.db_path).open_alarms()
    assert summary(alarms) == [
        ("door_forced", "side-door", None, 2, False),
        ("device_offline", None, "sim-1", 1, True),
    ]
    assert alarms[1].detail == "bus fault"
    assert AlarmStore(gw.db_path).open_count() == 2


async def test_an_alarm_raised_inside_start_is_recorded(tmp_path: Path) -> None:
    # A database with no SQLite left in it: the boot check sets it aside and starts empty, and start() raises
    # a store_restored alarm before it has even loaded the access list.
    (tmp_path / "menwei.db").write_bytes(b"\x00garbage, not SQLite" * 3000)
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        assert gw.recovery is not None and gw.alarm_recorder is not None
        await gw.alarm_recorder.flush()
        [alarm] = gw.alarms.open_alarms()
    finally:
        await gw.stop()
    assert alarm.kind == "store_restored" and alarm.detail == gw.recovery.describe()


async def test_unacknowledged_alarms_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg), clock=clock)
    await gw.start()
    try:
        gw.bus.publish(AlarmEvent(at=clock.now(), kind=AlarmKind.TAMPER, door_id="main-gate", detail="cover"))
        gw.bus.publish(AlarmEvent(at=clock.now(), kind=AlarmKind.OUTBOX_OVERFLOW, detail="1 dropped"))
        assert gw.alarm_recorder is not None
        await gw.alarm_recorder.flush()
        tamper, _ = gw.alarms.open_alarms()
        acked, done = gw.alarms.acknowledge(tamper.id, "guard1", "cover put back", clock.now())
        assert done and acked is not None and acked.acknowledged
    finally:
        await gw.stop()

    clock.advance(timedelta(hours=1).total_seconds())
    again = Gateway(cfg, build_devices(cfg), clock=clock)
    await again.start()
    try:
        assert summary(again.alarms.open_alarms()) == [("outbox_overflow", None, None, 1, False)]
        # The acknowledged tamper comes back: a new alarm to acknowledge, not a count on the old one.
        again.bus.publish(AlarmEvent(at=clock.now(), kind=AlarmKind.TAMPER, door_id="main-gate"))
        assert again.alarm_recorder is not None
        await again.alarm_recorder.flush()
        alarms = again.alarms.open_alarms()
    finally:
        await again.stop()
    assert summary(alarms) == [
        ("outbox_overflow", None, None, 1, False),
        ("tamper", "main-gate", None, 1, False),
    ]
    assert alarms[1].id != tamper.id


async def test_alarms_after_stop_are_not_recorded_and_stop_is_idempotent(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    gw.bus.publish(AlarmEvent(at=gw.clock.now(), kind=AlarmKind.FIRE_ALARM, device_id="sim-1"))
    await gw.stop()
    gw.bus.publish(AlarmEvent(at=gw.clock.now(), kind=AlarmKind.TAMPER, door_id="lobby-a"))  # unsubscribed
    await gw.stop()
    assert summary(AlarmStore(gw.db_path).open_alarms()) == [("fire_alarm", None, "sim-1", 1, False)]
