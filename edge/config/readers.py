"""[[readers]]: one model per reader kind, told apart by `type`."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edge.config.fields import CredentialName, DirectionValue, LaxPath, Section, Slug, Text
from edge.model import (
    Direction,
)


class ReaderBase(Section):
    """What every reader kind has: the door it opens and which way it lets people through."""

    id: Slug = Field(description="Reader id, a slug.")
    door: Slug = Field(description="Id of the door this reader opens.")
    direction: DirectionValue = Field(
        default=Direction.IN, description="'in' or 'out': the way through the door this reader serves."
    )
    area: Slug | None = Field(
        default=None,
        description=(
            "Anti-passback area this reader leads into ('in') or out of ('out'); needs an [[anti_passback]] "
            "entry. Omit for no anti-passback."
        ),
    )


class SimulatedReader(ReaderBase):
    """A reader fed by tests and the demo."""

    type: Literal["simulated"] = Field(description="Reader kind.")


def _line_format(value: str) -> str:
    from drivers.wiegand.lines import LineFormat  # pure Python: no hardware library

    try:
        LineFormat(value)
    except (ValueError, re.error) as err:
        raise PydanticCustomError("line_format", "{why}", {"why": str(err)}) from None
    return value


class WiegandSerialReader(ReaderBase):
    """A Wiegand card reader or keypad behind a Wiegand-to-serial converter (drivers/wiegand/)."""

    type: Literal["wiegand-serial"] = Field(description="Reader kind.")
    port: Text = Field(description="Serial port of the converter, e.g. /dev/ttyUSB1, or a pyserial URL.")
    baudrate: int = Field(default=9600, ge=300, le=4_000_000, description="Serial speed, bits per second.")
    card_format: Literal["h10301", "h10306", "h10302", "h10304"] = Field(
        default="h10301",
        description="Wiegand card format: 'h10301' (26-bit), 'h10306' (34-bit), 'h10302' or 'h10304' (37-bit).",
    )
    line_format: Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_line_format)] = Field(
        default="bits",
        description=(
            "What the converter prints per card: 'bits', 'hex', 'decimal', 'facility-number', or a regular "
            "expression with named groups (bits | length+hex | number [+ facility])."
        ),
    )
    facility_code: int | None = Field(
        default=None, ge=0, le=0xFFFF, description="Site facility code; cards of another facility are denied."
    )
    pin_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        allow_inf_nan=False,
        description="Seconds before an unfinished PIN is dropped.",
    )


def _camera_source(value: int | str) -> int | str:
    # A password in an RTSP URL would be a secret in this file (and in logs): it comes from a credential.
    if isinstance(value, str) and "://" in value:
        userinfo = urlsplit(value).netloc.rpartition("@")[0]
        if ":" in userinfo:
            raise PydanticCustomError(
                "camera_password",
                "a password in the URL is a secret in the config file: give the user name only "
                "(rtsp://user@host/...) and the password as password_credential",
            )
    return value


class QrCameraReader(ReaderBase):
    """A camera reading visitor-pass QR codes (drivers/qr/camera.py). Needs OpenCV (the `qr` extra)."""

    type: Literal["qr-camera"] = Field(description="Reader kind.")
    source: Annotated[int | Text, AfterValidator(_camera_source)] = Field(
        description=(
            "Frames from: a device index (0 = /dev/video0), an RTSP or HTTP URL, a video file, an image "
            "file or a folder of images."
        )
    )
    fps: float = Field(
        default=10.0, gt=0, le=60, allow_inf_nan=False, description="Frames decoded per second, at most."
    )
    password_credential: CredentialName | None = Field(
        default=None,
        description="Credential name of the camera's password, put into the URL's user part at start-up.",
    )
    spool: bool = Field(
        default=False,
        description=(
            "The source is a folder that images are dropped into (a camera uploading snapshots): each is read "
            "once and deleted, and the reader keeps watching it."
        ),
    )

    @model_validator(mode="after")
    def _spool_is_a_folder(self) -> Self:
        if self.spool and (not isinstance(self.source, str) or "://" in self.source or self.source.isdigit()):
            raise ValueError("spool = true needs a folder as the source")
        return self

    @model_validator(mode="after")
    def _password_needs_url(self) -> Self:
        if self.password_credential is not None and not (
            isinstance(self.source, str) and "://" in self.source and "@" in urlsplit(self.source).netloc
        ):
            raise ValueError("password_credential needs a source URL with a user name (rtsp://user@host/...)")
        return self


class LineScannerReader(ReaderBase):
    """A keyboard-wedge QR scanner (it types each scan as a line) on a tty (drivers/qr/line_scanner.py)."""

    type: Literal["line-scanner"] = Field(description="Reader kind.")
    path: LaxPath = Field(description="The tty the scanner types into, e.g. /dev/tty8.")


class SerialScannerReader(ReaderBase):
    """A serial (RS-232 or USB-CDC) QR scanner sending a line per scan (drivers/qr/line_scanner.py)."""

    type: Literal["serial-scanner"] = Field(description="Reader kind.")
    port: Text = Field(
        description="Serial port, e.g. /dev/ttyACM0, or any pyserial URL (socket://host:port)."
    )
    baudrate: int = Field(default=9600, ge=300, le=4_000_000, description="Serial speed, bits per second.")


class FaceCameraReader(ReaderBase):
    """A camera recognising residents' faces (drivers/face): reads are FACE credentials decided like a card.
    Needs the [face] section and the `vision` extra; its door must also have a non-face reader."""

    type: Literal["face-camera"] = Field(description="Reader kind.")
    source: int | Text = Field(
        description=(
            "Frames from: a device index (0 = /dev/video0), an RTSP or HTTP URL, a video file, an image file "
            "or a folder of images (the simulated camera)."
        )
    )
    fps: float = Field(
        default=10.0, gt=0, le=30, allow_inf_nan=False, description="Frames processed per second, at most."
    )


class FirmwareBridgeReader(ReaderBase):
    """A Wiegand card reader or keypad wired to a firmware-bridge board's reader input (firmware_bridge.reader)."""

    type: Literal["firmware-bridge"] = Field(description="Reader kind.")
    controller: Slug = Field(
        description="Id of the firmware-bridge [[controllers]] entry the reader is wired to."
    )
    board_reader: int = Field(
        default=1, ge=1, le=8, description="Reader input on the board, numbered from 1."
    )
    card_format: Literal["h10301", "h10306", "h10302", "h10304"] = Field(
        default="h10301",
        description="Wiegand card format: 'h10301' (26-bit), 'h10306' (34-bit), 'h10302' or 'h10304' (37-bit).",
    )
    facility_code: int | None = Field(
        default=None, ge=0, le=0xFFFF, description="Site facility code; cards of another facility are denied."
    )
    led: int = Field(
        default=1, ge=1, le=8, description="Board LED that shows granted (green) or denied (red)."
    )
    pin_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        allow_inf_nan=False,
        description="Seconds before an unfinished PIN is dropped.",
    )


class OsdpReaderConfig(ReaderBase):
    """An OSDP card/PIN reader on RS-485 (drivers/osdp/), Secure Channel enforced: no key, no reader. Needs
    libosdp (the `osdp` extra). Give a new reader its key with `python -m drivers.osdp.install`."""

    type: Literal["osdp"] = Field(description="Reader kind.")
    port: Text = Field(description="Serial port of the RS-485 line, e.g. /dev/ttyUSB2, or a pyserial URL.")
    baudrate: int = Field(default=9600, ge=9600, le=230_400, description="Serial speed, bits per second.")
    address: int = Field(ge=0, le=126, description="The reader's OSDP address.")
    key_credential: CredentialName = Field(
        description="Credential name of the reader's 16-byte secure channel key (SCBK), hex or raw."
    )
    card_format: Literal["h10301", "h10306", "h10302", "h10304"] = Field(
        default="h10301", description="Wiegand format of the raw card bits the reader reports."
    )
    facility_code: int | None = Field(
        default=None, ge=0, le=0xFFFF, description="Site facility code; cards of another facility are denied."
    )
    pin_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        allow_inf_nan=False,
        description="Seconds before an unfinished PIN is dropped.",
    )


class BleReaderConfig(ReaderBase):
    """A BLE scanner for residents' phone keys (drivers/ble/, docs/ble-phone-keys.md). Needs bleak (the `ble`
    extra) and a Bluetooth adapter (BlueZ)."""

    type: Literal["ble"] = Field(description="Reader kind.")
    keys_credential: CredentialName | None = Field(
        default=None,
        description=(
            "Fallback phone keys until the cloud sends some (ble/keys): credential name of a file with one "
            "'key-id hex-key' pair per line (32-byte keys; the key id is the value of the person's 'ble' "
            "credential in the access list). Absent: the reader knows no key until the cloud's list arrives."
        ),
    )
    company_id: int = Field(
        default=0xFFFF, ge=0, le=0xFFFF, description="Bluetooth SIG company id the phones advertise under."
    )
    rssi_threshold: int = Field(
        default=-70, ge=-127, le=0, description="Weakest signal (dBm) taken as 'at this door'; not security."
    )


ReaderConfig = Annotated[
    SimulatedReader
    | FirmwareBridgeReader
    | QrCameraReader
    | LineScannerReader
    | SerialScannerReader
    | WiegandSerialReader
    | OsdpReaderConfig
    | BleReaderConfig
    | FaceCameraReader,
    Field(discriminator="type"),
]
