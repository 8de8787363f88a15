"""The boot check on a real gateway: a database with garbage over its pages (or no database at all in the file)
is moved aside, never deleted; the newest good backup comes back with its modes and lockdown; with no backup
the gateway starts empty and denies everyone. Either way a store_restored alarm is on the record, the
snapshot request is armed, and no event seq is ever handed out twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.reader import CredentialRead
from drivers.sim.door_controller import SimulatedDoorController
from edge.cli import main as cli_main
from edge.decision import Reason
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.events import AlarmKind
from edge.gateway import Gateway
from edge.model import CredentialKind, DoorMode
from edge.store.audit import verify_chain
from edge.store.backup import list_backups
from edge.store.recovery import SEQ_JUMP, boot_check
from edge.store.upkeep import backup_dir
from tests.demo_site import demo_config

ROOT = Path(__file__).resolve().parents[3]
DOOR = "main-gate"
READER = "main-gate-in"
LOCKED = [False, True, False]  # relay levels of the demo's three doors when locked (strike, maglock, strike)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def garble_pages(path: Path, first_page: int = 2, pages: int = 6, page_size: int = 4096) -> None:
    """Overwrite whole pages after the header page with garbage, as a failing SD card might."""
    with path.open("r+b") as f:
        f.seek(first_page * page_size)
        f.write(bytes((i * 131 + 7) % 256 for i in range(pages * page_size)))


async def _seeded_gateway(data_dir: Path) -> tuple[int, int]:
    """A gateway with the demo list, a door in lockdown mode and some events, backed up, then stopped with
    more events after the backup. Returns (acl version, highest seq committed)."""
    cfg = demo_config(data_dir)
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(7, datetime.now(UTC), "side-door", list(gw.site.doors)))
    gw.set_mode(DoorMode.LOCKED, DOOR, by="guard", reason="test")
    for _ in range(5):
        gw.present(CredentialRead(READER, CredentialKind.CARD, ZHANG_CARD))
    assert gw.events is not None and gw.upkeep is not None
    gw.events.flush()
    await gw.stop()  # the mode write is in a spawned task: stop() waits for it
    gw.upkeep.backup_once()
    gw2 = Gateway(cfg, build_devices(cfg))  # more events after the backup: they will be lost with the card
    await gw2.start()
    gw2.present(CredentialRead(READER, CredentialKind.CARD, ZHANG_CARD))
    assert gw2.events is not None
    gw2.events.flush()
    last = gw2.events.last_seq()
    await gw2.stop()
    return 7, last


def _events(db: Path) -> list[tuple[int, dict[str, object]]]:
    with sqlite3.connect(db) as conn:
        return [(s, json.loads(p)) for s, p in conn.execute("SELECT seq, payload FROM events ORDER BY seq")]


async def test_a_corrupt_database_is_kept_aside_and_the_newest_good_backup_restored(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    version, last_seq = await _seeded_gateway(data_dir)
    cfg = demo_config(data_dir)
    db = data_dir / "menwei.db"
    garble_pages(db)
    original = db.read_bytes()

    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        recovery = gw.recovery
        assert recovery is not None
        assert recovery.restored_from == list_backups(backup_dir(cfg))[0]
        kept = recovery.moved_to / "menwei.db"
        assert recovery.moved_to.parent == data_dir and recovery.moved_to.name.startswith("corrupt-")
        assert kept.read_bytes() == original  # moved, byte for byte, never deleted
        engine = gw.engine
        assert engine is not None
        assert engine.acl.version == version
        assert engine.state.door_modes[DOOR] is DoorMode.LOCKED  # the restored database keeps its modes
        controller = gw.devices.controllers["sim-1"]
        assert isinstance(controller, SimulatedDoorController)
        await settle()
        assert controller.outputs[1:4] == LOCKED  # every door locked
        decision = gw.present(CredentialRead(READER, CredentialKind.CARD, ZHANG_CARD))
        assert not decision.granted  # the door is locked by mode, as before the damage
        assert gw.snapshot_wanted is not None and "restored backup" in gw.snapshot_wanted
        assert gw.events is not None
        gw.events.flush()
        events = _events(db)
    finally:
        await gw.stop()
    alarms = [(s, e) for s, e in events if e.get("alarm") == AlarmKind.STORE_RESTORED.value]
    assert len(alarms) == 1
    seq, alarm = alarms[0]
    assert recovery.last_backup_seq < last_seq  # events were written after the backup ...
    assert seq > last_seq  # ... and their seqs written after the backup (and sent, maybe) are never reused
    assert recovery.describe() == alarm["detail"]
    assert str(recovery.moved_to) in str(alarm["detail"])
    # `menwei audit verify` accepts the restore's gap (the alarm is chained onto the backup's last event) and
    # names it; any other missing event still breaks the chain.
    report = verify_chain(db)
    assert report.ok, report.detail
    assert report.gaps == ((recovery.last_backup_seq + 1, seq - 1),)
    assert f"seqs {recovery.last_backup_seq + 1}..{seq - 1} lost" in report.detail
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM events WHERE seq = ?", (recovery.last_backup_seq,))
    broken = verify_chain(db)
    assert not broken.ok and broken.first_broken_seq == recovery.last_backup_seq


async def test_without_a_backup_the_gateway_starts_empty_and_denies_everyone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    await _seeded_gateway(data_dir)
    cfg = demo_config(data_dir)
    for backup in list_backups(backup_dir(cfg)):
        backup.unlink()
    db = data_dir / "menwei.db"
    db.write_bytes(b"\x00garbage, not SQLite" * 3000)  # not even a database header left

    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        recovery = gw.recovery
        assert recovery is not None and recovery.restored_from is None
        assert (recovery.moved_to / "menwei.db").exists()
        engine = gw.engine
        assert engine is not None and engine.acl.version == 0
        for reader in gw.site.readers:
            decision = gw.present(CredentialRead(reader, CredentialKind.CARD, ZHANG_CARD))
            assert not decision.granted and decision.reason is Reason.UNKNOWN_CREDENTIAL
        controller = gw.devices.controllers["sim-1"]
        assert isinstance(controller, SimulatedDoorController)
        await settle()
        assert controller.outputs[1:4] == LOCKED
        assert gw.snapshot_wanted is not None and "empty store" in gw.snapshot_wanted
        assert gw.events is not None
        gw.events.flush()
        events = _events(db)
    finally:
        await gw.stop()
    alarm_seqs = [s for s, e in events if e.get("alarm") == AlarmKind.STORE_RESTORED.value]
    assert alarm_seqs == [SEQ_JUMP + 1]  # nothing salvageable: numbering jumps far past anything used
    report = verify_chain(db)
    assert report.ok and report.gaps == ((1, SEQ_JUMP),), report.detail
    capsys.readouterr()
    assert cli_main(["audit", "verify", "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "hash chain ok" in printed and f"seqs 1..{SEQ_JUMP} are not on this gateway" in printed


def test_a_sound_database_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "menwei.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    before = db.read_bytes()
    assert boot_check(db, tmp_path / "backups", full=True) is None
    assert boot_check(tmp_path / "absent.db", tmp_path / "backups") is None
    assert db.read_bytes() == before
    assert not list(tmp_path.glob("corrupt-*"))


async def test_the_gateway_schedules_the_first_backup_itself(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "data")
    gw = Gateway(cfg, build_devices(cfg))
    gw.upkeep_start_delay = 0.0
    await gw.start()
    try:
        upkeep = gw.upkeep
        assert upkeep is not None
        deadline = time.monotonic() + 30
        while upkeep.last_backup is None or upkeep.last_retention is None:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        await gw.stop()
    assert upkeep.last_backup is not None and upkeep.last_retention is not None
    assert list_backups(backup_dir(cfg)) == [upkeep.last_backup]
    assert boot_check(gw.db_path, backup_dir(cfg)) is None
