"""The device reference stays portable to MicroPython, and runs on file-backed slots (the board's layout)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from firmware_bridge import protocol as p
from firmware_bridge.device.files import FileStorage
from firmware_bridge.link import Link
from firmware_bridge.protocol import Op, ResetCause
from firmware_bridge.release import sign_release
from firmware_bridge.testbench import FAST_DEVICE, FAST_LINK, Bench
from firmware_bridge.update import update_firmware

PACKAGE = Path(__file__).resolve().parents[2] / "firmware-bridge"
PORTABLE = [
    "frame.py",
    "protocol.py",
    "device/core.py",
    "device/hal.py",
    "device/slots.py",
    "device/files.py",
]
# What MicroPython on an ESP32 or RP2040 has (binascii.crc32 and hashlib.sha256 are enabled on both ports).
ALLOWED = {"struct", "binascii", "hashlib", "json", "os", "time"}


@pytest.mark.parametrize("name", PORTABLE)
def test_portable_modules_import_only_what_micropython_has(name: str) -> None:
    tree = ast.parse((PACKAGE / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []  # never executed on the board
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            assert module in ALLOWED or module.split(".")[0] == "firmware_bridge", f"{name} imports {module}"
        assert "__future__" not in modules
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Attribute) and node.attr == "Struct"), f"{name}: struct.Struct"
        if isinstance(node, ast.ClassDef):
            assert not node.decorator_list, f"{name}: decorated class {node.name}"


async def test_update_on_file_slots_survives_a_power_cut(tmp_path: Path) -> None:
    storage = FileStorage(str(tmp_path), slot_size=64 * 1024)
    image = os.urandom(10_000)
    with Bench(config=FAST_DEVICE, storage=storage) as bench:
        link = Link(bench.port, timing=FAST_LINK)
        await link.start()
        try:
            assert await link.wait_up(5)
            result = await update_firmware(link, sign_release(bench.release_key, image, "1.7.0"))
        finally:
            await link.stop()
        key = bench.release_key
    assert result.slot == 1
    assert (tmp_path / "slot1.bin").read_bytes()[: len(image)] == image
    # A new board process on the same files: the record says slot 1 is active and confirmed.
    with Bench(
        config=FAST_DEVICE, storage=FileStorage(str(tmp_path), slot_size=64 * 1024), release_key=key
    ) as b2:
        link = Link(b2.port, timing=FAST_LINK)
        await link.start()
        try:
            assert await link.wait_up(5)
            _, _, cause, slot, confirmed, _, _, version = p.unpack_status(await link.request(Op.STATUS))
        finally:
            await link.stop()
    assert (cause, slot, confirmed, version) == (ResetCause.POWER_ON, 1, True, "1.7.0")
