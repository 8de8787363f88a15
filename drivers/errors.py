"""Driver errors: every driver raises a subclass of DriverError, with the reason as an enum."""

from __future__ import annotations

from enum import StrEnum

from edge.errors import DeviceError


class DriverErrorReason(StrEnum):
    OFFLINE = "offline"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    BAD_ARGUMENT = "bad_argument"


class DriverError(DeviceError):
    def __init__(self, device_id: str, reason: DriverErrorReason, detail: str = "") -> None:
        self.device_id = device_id
        self.reason = reason
        self.detail = detail
        super().__init__(f"{device_id}: {reason.value}" + (f": {detail}" if detail else ""))
