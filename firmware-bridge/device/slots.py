"""A/B firmware slots: which slot boots, which is on trial, and the update being received.

The boot rule is the bootloader's: an image freshly installed is booted *on trial* with one try. If it confirms
itself (the board's self test passes) it becomes the active image; if it does not, the watchdog resets the board
and, the try being used up, the previous slot boots again (reset cause ROLLBACK). The record is saved as JSON
(MicroPython has json) on every change, before anything that depends on it happens.
"""

import json

from firmware_bridge.protocol import ResetCause

NO_SLOT = -1


class SlotMeta:
    def __init__(self, factory_version: str) -> None:
        self.active = 0
        self.trial = NO_SLOT
        self.tries = 0
        self.versions = [factory_version, ""]
        self.next_cause = ResetCause.POWER_ON
        # the update being received, if any
        self.upd_slot = NO_SLOT
        self.upd_size = 0
        self.upd_offset = 0
        self.upd_sha = b""
        self.upd_sig = b""
        self.upd_version = ""

    def to_bytes(self) -> bytes:
        record = {
            "active": self.active,
            "trial": self.trial,
            "tries": self.tries,
            "versions": self.versions,
            "next_cause": self.next_cause,
            "upd_slot": self.upd_slot,
            "upd_size": self.upd_size,
            "upd_offset": self.upd_offset,
            "upd_sha": self.upd_sha.hex(),
            "upd_sig": self.upd_sig.hex(),
            "upd_version": self.upd_version,
        }
        return json.dumps(record).encode()

    @staticmethod
    def from_bytes(data: bytes, factory_version: str) -> "SlotMeta":
        meta = SlotMeta(factory_version)
        if not data:
            return meta
        record = json.loads(data)
        meta.active = int(record["active"])
        meta.trial = int(record["trial"])
        meta.tries = int(record["tries"])
        meta.versions = [str(v) for v in record["versions"]]
        meta.next_cause = int(record["next_cause"])
        meta.upd_slot = int(record["upd_slot"])
        meta.upd_size = int(record["upd_size"])
        meta.upd_offset = int(record["upd_offset"])
        meta.upd_sha = bytes.fromhex(str(record["upd_sha"]))
        meta.upd_sig = bytes.fromhex(str(record["upd_sig"]))
        meta.upd_version = str(record["upd_version"])
        return meta

    def boot(self, hardware_cause: int) -> tuple[int, int, bool]:
        """Choose the slot to run: (slot, reset cause, on trial). Mutates the record; save it afterwards.
        hardware_cause is what the chip says (POWER_ON after a power cut), or -1 when it cannot tell."""
        cause = self.next_cause if hardware_cause < 0 else hardware_cause
        self.next_cause = ResetCause.WATCHDOG  # what the next reset was, unless someone says otherwise
        if self.trial != NO_SLOT:
            if self.tries > 0:
                self.tries -= 1
                return self.trial, ResetCause.UPDATE, True
            self.trial = NO_SLOT
            return self.active, ResetCause.ROLLBACK, False
        return self.active, cause, False

    def confirm(self) -> None:
        if self.trial != NO_SLOT:
            self.active = self.trial
            self.trial = NO_SLOT
            self.tries = 0

    def clear_update(self) -> None:
        self.upd_slot = NO_SLOT
        self.upd_size = 0
        self.upd_offset = 0
        self.upd_sha = b""
        self.upd_sig = b""
        self.upd_version = ""
