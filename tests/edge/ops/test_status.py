"""`menwei status`: read from the database of a running gateway (read-only, while it keeps deciding) and from
its metrics endpoint; healthy, degraded (old outbox, device offline, stale backup), config error; --json;
no personal data in the report."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.reader import CredentialRead
from drivers.sim.door_controller import SimulatedDoorController
from edge.cli import main
from edge.config import ConsoleSection, GatewayConfig, MetricsSection, load_config
from edge.demo_data import LI_CARD, UNKNOWN_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.events import AccessListEvent
from edge.gateway import Gateway
from edge.model import CredentialKind, DoorMode
from edge.ops.metrics import MetricsServer
from edge.ops.status import EXIT_DEGRADED, EXIT_HEALTHY, gather, read_only
from edge.store.backup import backup_name

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo.toml"


def config_for(data_dir: Path, metrics_port: int | None = None) -> GatewayConfig:
    cfg = load_config(DEMO)
    update: dict[str, object] = {"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})}
    if metrics_port is not None:
        update["metrics"] = MetricsSection(port=metrics_port)
    return cfg.model_copy(update=update)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Gateway, GatewayConfig]]:
    cfg = config_for(tmp_path)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(5, datetime.now(UTC), "side-door", list(gw.site.doors)))
    server = MetricsServer(gw, "127.0.0.1", 0)
    server.start()
    yield gw, config_for(tmp_path, server.port)
    await asyncio.to_thread(server.stop)
    await gw.stop()


async def present(gw: Gateway, *cards: str) -> None:
    for card in cards:
        gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, card))
    assert gw.events is not None
    await asyncio.to_thread(gw.events.flush)


async def test_status_of_a_running_gateway(running: tuple[Gateway, GatewayConfig]) -> None:
    gw, cfg = running
    # What the downlink publishes when a snapshot comes into force: status dates the access list by it.
    gw.bus.publish(AccessListEvent(at=datetime.now(UTC), version=5, previous=0, source="snapshot"))
    await present(gw, ZHANG_CARD, UNKNOWN_CARD, UNKNOWN_CARD)
    gw.set_mode(DoorMode.LOCKED, "lobby-a", by="test")
    await asyncio.sleep(0.1)  # the mode is saved in a thread

    report = await asyncio.to_thread(gather, cfg, version="9.9")
    assert report.problems == [], report.render()
    assert report.exit_code == EXIT_HEALTHY
    assert report.access_list["version"] == 5
    assert report.access_list["people"] == 4
    assert report.access_list["credentials"]["cards"] >= 4
    assert report.access_list["age_seconds"] < 60
    assert report.doors == {"main-gate": "normal", "side-door": "normal", "lobby-a": "locked"}
    assert report.last_hour["decisions"] == {"granted": 1, "denied": 2}
    assert report.last_hour["denied_by_reason"] == {"unknown_credential": 2}
    assert report.outbox["depth"] >= 3  # no [mqtt]: everything waits
    assert report.live is not None and report.live["devices"]["sim-1"] is True
    assert report.database["schema_version"] >= 6

    screen = report.render()
    assert len(screen.splitlines()) <= 25
    assert "lobby-a locked" in screen and "healthy" in screen

    # Read-only and WAL-safe: the gateway went on deciding and storing while status read.
    await present(gw, LI_CARD)
    report = await asyncio.to_thread(gather, cfg, version="9.9")
    assert report.last_hour["decisions"]["granted"] == 2

    # No personal data: ids and counts only.
    text = json.dumps(report.to_json())
    for personal in ("Zhang Wei", "Li Na", ZHANG_CARD, LI_CARD, UNKNOWN_CARD, "p-zhang"):
        assert personal not in text


async def test_degraded_by_old_outbox_and_offline_device(running: tuple[Gateway, GatewayConfig]) -> None:
    gw, cfg = running
    await present(gw, UNKNOWN_CARD)
    sim = gw.devices.controllers["sim-1"]
    assert isinstance(sim, SimulatedDoorController)
    sim.go_offline()
    await asyncio.sleep(0.05)
    later = datetime.now(UTC) + timedelta(hours=2)  # as if the cloud had been away for two hours
    report = await asyncio.to_thread(gather, cfg, version="9.9", now=later)
    assert report.exit_code == EXIT_DEGRADED
    assert any(p.startswith("outbox:") for p in report.problems), report.problems
    assert "device sim-1 offline" in report.problems
    assert "DEGRADED" in report.render() and "sim-1 OFFLINE" in report.render()


async def test_unacknowledged_alarms_are_counted_and_degrade_a_gateway_with_a_console(
    running: tuple[Gateway, GatewayConfig],
) -> None:
    gw, cfg = running
    sim = gw.devices.controllers["sim-1"]
    assert isinstance(sim, SimulatedDoorController)
    door = gw.site.doors["side-door"]
    assert door.contact_input is not None
    sim.set_input(door.contact_input, True)  # forced, and still open
    sim.go_offline()
    sim.come_back()  # back: cleared, but nobody has acknowledged it
    assert gw.alarm_recorder is not None and gw.events is not None
    await gw.alarm_recorder.flush()
    await asyncio.to_thread(gw.events.flush)

    # No [console]: nobody could acknowledge them, so they are shown but do not keep the gateway degraded.
    report = await asyncio.to_thread(gather, cfg, version="9.9")
    assert report.alarms == {
        "unacknowledged": 2,
        "active": 1,
        "by_kind": {"device_offline": 1, "door_forced": 1},
        "console": False,
    }
    assert report.problems == [], report.problems
    assert report.last_hour["alarms"] == {"device_offline": 1, "door_forced": 1}  # raised, not cleared
    assert "alarms       2 unacknowledged (device_offline 1, door_forced 1; 1 still active; no [console]" in (
        report.render()
    )

    with_console = cfg.model_copy(update={"console": ConsoleSection()})
    report = await asyncio.to_thread(gather, with_console, version="9.9")
    assert report.exit_code == EXIT_DEGRADED
    assert report.problems == [
        "2 unacknowledged alarm(s) (device_offline 1, door_forced 1): acknowledge in the guard console"
    ]
    assert report.to_json()["alarms"]["unacknowledged"] == 2

    for alarm in await asyncio.to_thread(gw.alarms.open_alarms):
        await asyncio.to_thread(gw.alarms.acknowledge, alarm.id, "guard1", "", datetime.now(UTC))
    report = await asyncio.to_thread(gather, with_console, version="9.9")
    assert report.problems == [] and report.alarms["unacknowledged"] == 0
    assert "alarms       0 unacknowledged" in report.render()


async def test_backups_are_listed_and_a_stale_one_degrades(running: tuple[Gateway, GatewayConfig]) -> None:
    _, cfg = running
    backups = cfg.gateway.data_dir / "backups"  # [backup] dir default
    backups.mkdir(exist_ok=True)
    now = datetime.now(UTC)
    old = backups / backup_name(now - timedelta(days=3))
    new = backups / backup_name(now - timedelta(hours=1))
    for path in (old, new):
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x)")
    (backups / (backup_name(now) + ".tmp")).write_bytes(b"half a backup")  # not counted
    report = await asyncio.to_thread(gather, cfg, version="9.9", now=now)
    assert report.backups["count"] == 2 and report.backups["newest"] == new.name
    assert not any("backup" in p for p in report.problems)
    # Two intervals (24 h by default) later without a new one: the backups are failing.
    report = await asyncio.to_thread(gather, cfg, version="9.9", now=now + timedelta(hours=49))
    assert any("newest backup" in p for p in report.problems), report.problems
    # Backups switched off: nothing is expected.
    off = cfg.model_copy(update={"backup": cfg.backup.model_copy(update={"enabled": False})})
    report = await asyncio.to_thread(gather, off, version="9.9", now=now + timedelta(hours=49))
    assert not any("backup" in p for p in report.problems)


def test_read_only_connection_cannot_write_and_leaves_no_files(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()  # the last connection: the WAL is checkpointed and removed, as after a clean stop
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]
    with read_only(db) as ro:
        assert ro.execute("SELECT count(*) FROM t").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError):
            ro.execute("INSERT INTO t VALUES (1)")
    # No -wal / -shm created by the reader: run as root, they would lock the service out of its database.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]

    writer = sqlite3.connect(db)  # a running gateway: its uncommitted-to-the-main-file rows are seen
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.commit()
    with read_only(db) as ro:
        assert ro.execute("SELECT count(*) FROM t").fetchone() == (1,)
    writer.close()


def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[site]\nid = 'x'\n")
    assert main(["status", "--config", str(bad)]) == 2

    config = tmp_path / "gateway.toml"
    config.write_text(DEMO.read_text().replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path}"'))
    capsys.readouterr()
    assert main(["status", "--config", str(config), "--json"]) == EXIT_DEGRADED  # never ran: no database
    out = json.loads(capsys.readouterr().out)
    assert out["healthy"] is False and out["gateway"] == "gw-demo"
    assert any("no database" in p for p in out["problems"])
