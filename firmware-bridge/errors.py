"""Errors of the gateway's side of the link, each with its reason as an enum.

    BridgeError            the link: port, timeouts, NAKs, link down
    └── UpdateError        a firmware update: refused image, interrupted transfer, rollback

The frame layer does not raise into the link: the decoder counts what it drops (frame.FrameFault). The door
controller converts BridgeError into drivers.errors.DriverError at its boundary.
"""

from __future__ import annotations

from enum import StrEnum


class BridgeErrorReason(StrEnum):
    LINK_DOWN = "link_down"  # no heartbeat from the device, or the port is gone
    TIMEOUT = "timeout"  # no answer after every retry
    NAK = "nak"  # the device refused the command (nak_code says why)
    PROTOCOL = "protocol"  # an answer that does not parse
    PORT = "port"  # the serial port cannot be opened or used


class BridgeError(Exception):
    def __init__(
        self,
        reason: BridgeErrorReason,
        detail: str = "",
        nak_code: int | None = None,
        nak_detail: bytes = b"",
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.nak_code = nak_code  # protocol.NakCode
        self.nak_detail = nak_detail
        super().__init__(reason.value + (f": {detail}" if detail else ""))


class UpdateErrorReason(StrEnum):
    BAD_SIGNATURE = "bad_signature"  # the device did not accept the release signature
    BAD_HASH = "bad_hash"  # the image in the slot does not match its SHA-256
    REFUSED = "refused"  # the device said no before the transfer (too large, update already on trial)
    INTERRUPTED = "interrupted"  # the link did not come back in time to resume
    ROLLED_BACK = "rolled_back"  # the new image never confirmed itself; the device runs the old one
    BAD_RELEASE = "bad_release"  # the release file is not one


class UpdateError(BridgeError):
    def __init__(self, update_reason: UpdateErrorReason, detail: str = "") -> None:
        super().__init__(BridgeErrorReason.NAK, detail)
        self.update_reason = update_reason
        self.args = (update_reason.value + (f": {detail}" if detail else ""),)

    def __str__(self) -> str:
        return str(self.args[0])
