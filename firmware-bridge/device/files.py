"""Firmware slots as files: the A/B storage of a MicroPython board, where the "firmware" that updates is the
application (a bundle of .py/.mpy files) that boot.py loads from the active slot, not MicroPython itself.

Runs unchanged on CPython (the tests use it on a temporary folder) and on MicroPython's VFS on the board's
flash. The record is written to a new file and renamed over the old one, so a power cut mid-write leaves either
the old record or the new one, never half of one.
"""

import os

from firmware_bridge.device.hal import Storage


class FileStorage(Storage):
    def __init__(self, folder: str, slot_size: int = 512 * 1024) -> None:
        self.folder = folder
        self.slot_size = slot_size

    def _slot(self, slot: int) -> str:
        return self.folder + "/slot" + str(slot) + ".bin"

    def erase(self, slot: int) -> None:
        with open(self._slot(slot), "wb"):
            pass

    def write(self, slot: int, offset: int, data: bytes) -> None:
        path = self._slot(slot)
        try:
            f = open(path, "r+b")  # noqa: SIM115 - MicroPython has no contextlib.ExitStack for the fallback
        except OSError:
            f = open(path, "w+b")  # noqa: SIM115
        with f:
            f.seek(offset)
            f.write(data)

    def read(self, slot: int, offset: int, length: int) -> bytes:
        try:
            with open(self._slot(slot), "rb") as f:
                f.seek(offset)
                return bytes(f.read(length))
        except OSError:
            return b""

    def load_meta(self) -> bytes:
        try:
            with open(self.folder + "/slots.json", "rb") as f:
                return bytes(f.read())
        except OSError:
            return b""

    def save_meta(self, data: bytes) -> None:
        new = self.folder + "/slots.json.new"
        with open(new, "wb") as f:
            f.write(data)
        os.rename(new, self.folder + "/slots.json")

    def active_path(self, slot: int) -> str:
        """The file boot.py loads for a slot."""
        return self._slot(slot)
