"""The gateway's typed config: one TOML file, read and validated once at start-up.

Why it is this strict: a gateway runs unattended for years and drives locks. A mistyped key must stop it at
start-up with a message naming the file and the key, not fall back to a default and leave a door misbehaving.
So every model forbids unknown keys, types are strict (the string "1" is not an output number), and
cross-references (a reader's door, a door's controller, output and inputs, anti-passback areas) are checked
before anything touches hardware. `load_config` reports every problem at once, one line each:

    config/site.toml: doors[1].unlock_secnds: unknown key
    config/site.toml: readers[2].door: unknown door 'gate-x'

Secrets are never in this file; [secrets] only names the credentials to read (see edge.secrets).

The file describes hardware; `GatewayConfig.to_site()` turns it into the domain's `edge.model.Site`.

Extending it:
- a section (mqtt, face, console, ...): subclass `Section`, add it to `GatewayConfig` with a default (or
  `None` if the feature is optional), and put its cross-checks in `_cross_problems`;
- a controller or reader kind (modbus-tcp, modbus-rtu, firmware-bridge, ...): subclass `ControllerBase`
  or `ReaderBase` with its own `type: Literal["..."]` and add it to the `ControllerConfig` or `ReaderConfig`
  union, and build its driver in edge.devices.build_devices.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from edge.errors import ConfigError
from edge.model import (
    AntiPassbackMode,
    AntiPassbackRule,
    Direction,
    Door,
    DoorMode,
    LockType,
    Reader,
    Site,
)
from edge.secrets import check_credential_name

DEFAULT_DATA_DIR = Path("/var/lib/menwei")
STATE_DIRECTORY = "STATE_DIRECTORY"  # set by systemd for StateDirectory=
MASK = "**********"

Loc = tuple[str | int, ...]

# --- field types -------------------------------------------------------------------------------------------

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")


def _slug(value: str) -> str:
    # Ids end up in event records, MQTT topics and URLs: keep them to a safe, case-free alphabet.
    if not _SLUG.fullmatch(value):
        raise PydanticCustomError(
            "slug",
            "{value} is not a valid id: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit",
            {"value": repr(value)},
        )
    return value


def _timezone(value: str) -> str:
    # Checked against the zone list rather than by opening the file: "Asia" (a directory) and "localtime"
    # (the host's zone file, not a zone: schedules would follow whatever the box is set to) are not zones.
    if value == "localtime" or value not in zoneinfo.available_timezones():
        raise PydanticCustomError(
            "timezone",
            "unknown time zone {value}: use an IANA name such as 'Asia/Shanghai'",
            {"value": repr(value)},
        )
    return value


def _credential_name(value: str) -> str:
    try:
        return check_credential_name(value)
    except ValueError as err:
        raise PydanticCustomError("credential_name", str(err)) from None


Slug = Annotated[str, AfterValidator(_slug)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
CredentialName = Annotated[str, AfterValidator(_credential_name)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
# Terminal numbers as printed on the controller, counting from 1.
InputNumber = Annotated[int, Field(ge=1, le=256)]
# Strict mode would demand enum and Path instances; TOML gives strings, so these fields alone are lax
# (an enum still accepts only its own values).
LaxPath = Annotated[Path, Field(strict=False)]
DirectionValue = Annotated[Direction, Field(strict=False)]
DoorModeValue = Annotated[DoorMode, Field(strict=False)]
LockTypeValue = Annotated[LockType, Field(strict=False)]
AntiPassbackModeValue = Annotated[AntiPassbackMode, Field(strict=False)]


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, types are strict, values are read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- sections ----------------------------------------------------------------------------------------------


class SiteSection(Section):
    """[site]: the property this gateway serves."""

    id: Slug = Field(description="Site id, a slug, e.g. 'lotus-garden'; the cloud knows the site by it.")
    name: Text = Field(description="Human-readable site name, shown in the console and reports.")
    timezone: TimeZoneName = Field(
        description="IANA time zone of the site, e.g. 'Asia/Shanghai'; schedules and holidays use it."
    )

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class GatewaySection(Section):
    """[gateway]: this box."""

    id: Slug = Field(description="Gateway id, a slug, unique within the site, e.g. 'gw-main-gate'.")
    data_dir: LaxPath = Field(
        default=DEFAULT_DATA_DIR,
        description=(
            "Directory for the database and other state. $STATE_DIRECTORY (set by systemd's StateDirectory=) "
            "overrides it; a relative path is relative to the config file's directory."
        ),
    )


class StoreSection(Section):
    """[store]: the SQLite store."""

    synchronous: Literal["full", "normal"] = Field(
        default="full",
        description=(
            "SQLite synchronous mode. 'full': a committed event survives power loss. 'normal': faster, "
            "but the last transactions may be lost on power loss."
        ),
    )
    boot_check: Literal["quick", "full"] = Field(
        default="quick",
        description=(
            "Check of the database before the gateway opens it: 'quick' (PRAGMA quick_check) or 'full' "
            "(PRAGMA integrity_check, slower on a big file). A failure restores the newest good backup."
        ),
    )


class RetentionSection(Section):
    """[retention]: how long synced events are kept on the gateway (edge/store/retention.py)."""

    events_max_age_days: float = Field(
        default=365.0,
        gt=0,
        le=1095,
        description=(
            "Events older than this are deleted once the cloud has them (at most 1095 days, 3 years); an "
            "unsynced event is never deleted."
        ),
    )
    interval_hours: float = Field(
        default=6.0,
        gt=0,
        le=168,
        description="Hours between two retention runs (the first soon after start).",
    )
    batch_size: int = Field(
        default=500,
        ge=10,
        le=10_000,
        description="Events deleted per transaction; the event writer gets the database between two.",
    )


class BackupSection(Section):
    """[backup]: scheduled online backups of the database (edge/store/backup.py)."""

    enabled: bool = Field(default=True, description="Take scheduled backups.")
    dir: LaxPath | None = Field(
        default=None,
        description="Backup directory (default <data_dir>/backups); relative to the data directory.",
    )
    interval_hours: float = Field(default=24.0, gt=0, le=720, description="Hours between two backups.")
    keep: int = Field(default=7, ge=1, le=100, description="Newest backups kept; older ones are deleted.")


class LoggingSection(Section):
    """[logging]"""

    level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Lowest level that is logged."
    )
    format: Literal["text", "json"] = Field(
        default="text", description="'text' for people (journalctl), 'json' for log shippers."
    )


def _loopback(value: str) -> str:
    try:
        loopback = ipaddress.ip_address(value).is_loopback
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    if not loopback:
        raise ValueError(f"{value!r} is not a loopback address: the metrics name doors and devices")
    return value


class MetricsSection(Section):
    """[metrics]: a Prometheus endpoint served by `menwei run` (edge/ops/metrics.py); absent means none."""

    address: Annotated[str, AfterValidator(_loopback)] = Field(
        default="127.0.0.1",
        description="Loopback address to listen on (127.0.0.1 or ::1); scrape remotely through a proxy.",
    )
    port: int = Field(default=9817, ge=1, le=65535, description="TCP port of http://address:port/metrics.")


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return value


class ConsoleSection(Section):
    """[console]: the guard console, a web page and REST API served by `menwei run` (docs/console.md);
    absent means none."""

    address: Annotated[str, AfterValidator(_ip_address)] = Field(
        default="0.0.0.0",  # noqa: S104 - the booth's tablet reaches the gateway over the LAN
        description="IP address to listen on: 0.0.0.0 (every interface, for the booth's tablet), or one "
        "interface's address, or 127.0.0.1 behind a local proxy.",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port of the console.")
    tls_cert_file: LaxPath | None = Field(
        default=None,
        description="Server certificate chain (PEM), an absolute path; with tls_key_credential it turns "
        "HTTPS on (and Secure cookies). Absent: plain HTTP, warned about unless the address is loopback.",
    )
    tls_key_credential: CredentialName | None = Field(
        default=None,
        description="Credential name of the certificate's private key (PEM), a file in "
        "$CREDENTIALS_DIRECTORY (systemd LoadCredential=).",
    )
    session_hours: float = Field(
        default=8.0, gt=0, le=168, description="A login lasts this long (one shift); then log in again."
    )
    max_failures: int = Field(
        default=5, ge=1, le=100, description="Failed logins of one account in 15 minutes that lock it out."
    )
    lockout_minutes: float = Field(
        default=15.0, gt=0, le=1440, description="How long a locked-out account (or client address) waits."
    )
    min_password_length: int = Field(
        default=12, ge=8, le=128, description="Shortest password accepted for a console account."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_credential is None):
            raise ValueError("HTTPS needs both tls_cert_file and tls_key_credential")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


class SecretsSection(Section):
    """[secrets]: which credentials to read, never their values (see edge.secrets)."""

    pin_key: CredentialName = Field(
        default="pin-key",
        description=(
            "Credential name of the site PIN key (32 bytes, raw or hex) under which PINs are hashed: "
            "read from $CREDENTIALS_DIRECTORY/<name>, else $MENWEI_SECRET_<NAME>."
        ),
    )


class MqttSection(Section):
    """[mqtt]: the link to the property's cloud (docs/contract.md). Absent: the gateway runs offline only."""

    host: Text = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    client_id: Text | None = Field(
        default=None,
        description="MQTT client id; default 'menwei-<site>-<gateway>'. Must be unique per broker.",
    )
    username: Text | None = Field(default=None, description="Username, if the broker wants one.")
    password_credential: CredentialName | None = Field(
        default=None, description="Credential name holding the password (never the password itself)."
    )
    tls_ca_file: LaxPath | None = Field(
        default=None, description="CA certificate (PEM) that signed the broker's certificate; enables TLS."
    )
    tls_cert_file: LaxPath | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS; needs tls_key_credential."
    )
    tls_key_credential: CredentialName | None = Field(
        default=None,
        description="Credential name of the client's private key (PEM), read from $CREDENTIALS_DIRECTORY.",
    )
    keepalive_seconds: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive.")
    session_expiry_seconds: int = Field(
        default=604_800,
        ge=0,
        description="How long the broker keeps our session and queued messages offline.",
    )
    topic_prefix: Text = Field(
        default="menwei/v1", description="Topic tree prefix; carries the contract version."
    )
    upload_batch: int = Field(default=500, ge=1, le=5000, description="Events per upload message.")
    upload_window: int = Field(
        default=4, ge=1, le=64, description="Upload messages in flight (unacknowledged) at once."
    )
    heartbeat_seconds: float = Field(default=30.0, ge=1, description="Telemetry interval.")
    outbox_max_events: int = Field(
        default=2_000_000,
        ge=1000,
        description=(
            "Disk cap of the event log. Past it, events already sent are pruned first; unsent events are "
            "dropped, oldest first and with an alarm, only when nothing else is left."
        ),
    )
    max_payload_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Larger incoming messages are refused unread."
    )
    clock_skew_seconds: float = Field(
        default=30.0, ge=0, description="Allowance between the cloud's clock and ours when checking commands."
    )


_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")


def _topic_prefix(value: str) -> str:
    # No wildcards, no empty levels, no '$' topics: the prefix is both published to and subscribed under.
    if not _TOPIC_PREFIX.fullmatch(value):
        raise PydanticCustomError(
            "topic_prefix",
            "{value} is not a topic prefix: use levels of letters, digits, '-' or '_' separated by '/'",
            {"value": repr(value)},
        )
    return value


TopicPrefix = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_topic_prefix)]

# The [homeassistant] keys that say how to reach a broker; with use_cloud_broker they come from [mqtt].
HA_BROKER_KEYS = (
    "host",
    "port",
    "username",
    "password_credential",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_credential",
)


class HomeAssistantSection(Section):
    """[homeassistant]: MQTT discovery for a site's Home Assistant (cloud-sync/homeassistant.py). Off by default."""

    enabled: bool = Field(default=False, description="Publish the doors to Home Assistant.")
    use_cloud_broker: bool = Field(
        default=False,
        description="Reach the broker of [mqtt] with its connection settings (a separate MQTT client).",
    )
    host: Text = Field(default="127.0.0.1", description="Home Assistant's broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    username: Text | None = Field(default=None, description="Username, if the broker wants one.")
    password_credential: CredentialName | None = Field(
        default=None, description="Credential name holding the password (never the password itself)."
    )
    tls_ca_file: LaxPath | None = Field(
        default=None, description="CA certificate (PEM) that signed the broker's certificate; enables TLS."
    )
    tls_cert_file: LaxPath | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS; needs tls_key_credential."
    )
    tls_key_credential: CredentialName | None = Field(
        default=None,
        description="Credential name of the client's private key (PEM), read from $CREDENTIALS_DIRECTORY.",
    )
    client_id: Text | None = Field(
        default=None, description="MQTT client id; default 'menwei-ha-<site>-<gateway>'. Unique per broker."
    )
    keepalive_seconds: int = Field(
        default=30,
        ge=5,
        le=3600,
        description="MQTT keep-alive; a vanished link shows unavailable after ~1.5x.",
    )
    discovery_prefix: TopicPrefix = Field(
        default="homeassistant", description="Home Assistant's discovery prefix (an MQTT integration option)."
    )
    topic_prefix: TopicPrefix = Field(
        default="menwei", description="State and command topics live under <topic_prefix>/<site>/<gateway>/."
    )
    allow_unlock: bool = Field(
        default=False,
        description="Let Home Assistant's unlock open a door (audited); false: refused, logged and audited.",
    )

    @model_validator(mode="after")
    def _one_broker(self) -> Self:
        if self.use_cloud_broker:
            own = [k for k in HA_BROKER_KEYS if k in self.model_fields_set]
            if own:
                raise ValueError(
                    f"use_cloud_broker = true takes the broker from [mqtt]; remove {', '.join(own)}"
                )
        return self


class PassesSection(Section):
    """[passes]: visitor passes scanned as QR tokens (docs/passes.md). The token format and prefix are fixed in
    code; the trust list of signing keys comes from the cloud, never from this file."""

    clock_skew_seconds: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description=(
            "Allowance for the issuer's clock and ours disagreeing: a pass is accepted from not-before minus "
            "this to expiry plus this, and the clock counts as set back only when it is more than this behind "
            "the last-known-good time."
        ),
    )
    walkin_key: CredentialName = Field(
        default="pass-walkin-key",
        description=(
            "Credential name of this gateway's Ed25519 key for walk-in passes (32 bytes, raw or hex). Absent: "
            "walk-in registration is off. Its public key must be in the site's trust list for other gateways."
        ),
    )
    walkin_doors: list[Slug] = Field(
        default=[], description="Doors a walk-in pass opens when the guard names none ([[doors]] ids)."
    )
    walkin_hours: float = Field(
        default=4.0,
        gt=0,
        le=168,
        allow_inf_nan=False,
        description="Default validity of a walk-in pass, hours.",
    )
    walkin_max_hours: float = Field(
        default=24.0,
        gt=0,
        le=168,
        allow_inf_nan=False,
        description="Longest validity a guard may give, hours.",
    )
    walkin_uses: int = Field(default=1, ge=1, le=100, description="Default number of uses of a walk-in pass.")
    walkin_max_uses: int = Field(
        default=4, ge=1, le=100, description="Most uses a guard may give a walk-in pass."
    )


# --- hardware lists ----------------------------------------------------------------------------------------


class FaceSection(Section):
    """[face]: face recognition at doors with a face-camera reader (edge/face, drivers/face, docs/faces.md)."""

    pack_dir: LaxPath = Field(
        description=(
            "Model pack directory (detector + recognizer ONNX files), checked against its manifest's sha-256 "
            "on start. The operator copies it there; menwei never downloads models."
        )
    )
    manifest: Text | None = Field(
        default=None,
        description="Manifest name in config/model-packs (default: the pack directory's name).",
    )
    threads: int = Field(default=1, ge=1, le=8, description="onnxruntime threads per model session.")
    match_threshold: float | None = Field(
        default=None, gt=-1, lt=1, description="Lowest cosine similarity that matches (default: the pack's)."
    )
    margin: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Lead of the best person over the next one (default: the pack's).",
    )
    min_face_px: float = Field(
        default=80.0, gt=0, description="Smaller faces (people further away) are ignored: the distance gate."
    )
    agree_frames: int = Field(
        default=3, ge=1, le=30, description="Consecutive frames that must match the same person."
    )
    cooldown_seconds: float = Field(
        default=10.0, ge=0, description="A recognised person is not reported again for this long."
    )
    unknown_after_seconds: float = Field(
        default=3.0, gt=0, description="An unmatched face lingering this long is reported as unknown."
    )
    min_motion: float = Field(
        default=0.05,
        ge=0,
        description="Liveness: natural landmark motion required (edge/face/liveness.py; calibrate per camera).",
    )
    snapshots_keep: int = Field(
        default=500,
        ge=0,
        description="Unknown-face snapshots kept on this gateway, at most (oldest go first).",
    )
    snapshots_max_age_days: float = Field(
        default=7.0, gt=0, description="Unknown-face snapshots older than this are deleted."
    )
    antispoof_dir: LaxPath | None = Field(
        default=None,
        description=(
            "Directory of the two MiniFASNet models: a texture-based second liveness signal (hash-checked). "
            "Absent: landmark motion only."
        ),
    )
    antispoof_threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Lowest MiniFASNet live probability that passes (calibrate per camera).",
    )
    second_factor_doors: list[Slug] = Field(
        default=[], description="Doors where a face must be combined with a card, PIN or phone key."
    )
    second_factor_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Time allowed between the face and the second credential."
    )


class ControllerBase(Section):
    """What every controller kind has: door outputs (relays) and inputs (contacts, exit buttons, tamper)."""

    id: Slug = Field(description="Controller id, a slug; doors refer to it.")
    outputs: int = Field(ge=1, le=64, description="Number of relay outputs, numbered from 1.")
    inputs: int = Field(ge=0, le=256, description="Number of digital inputs, numbered from 1.")


class SimulatedController(ControllerBase):
    """An in-process controller for tests and the demo: no hardware."""

    type: Literal["simulated"] = Field(description="Controller kind.")


class FirmwareBridgeController(ControllerBase):
    """A door-controller microcontroller (ESP32, RP2040) on a UART or RS-485 line, running the firmware-bridge
    protocol (firmware-bridge/, docs/firmware-bridge.md)."""

    type: Literal["firmware-bridge"] = Field(description="Controller kind.")
    port: Text = Field(description="Serial port of the board, e.g. /dev/ttyAMA0 or /dev/ttyUSB0.")
    baudrate: int = Field(default=115200, ge=1200, le=4_000_000, description="Serial speed, bits per second.")
    heartbeat_seconds: float = Field(
        default=0.5, ge=0.05, le=10, allow_inf_nan=False, description="Seconds between heartbeats each way."
    )
    missed_heartbeats: int = Field(
        default=3, ge=2, le=20, description="Heartbeat periods of silence before the board is offline."
    )
    ack_timeout_seconds: float = Field(
        default=0.25,
        ge=0.01,
        le=5,
        allow_inf_nan=False,
        description="Seconds to wait for an answer before resending.",
    )
    retries: int = Field(
        default=4, ge=0, le=20, description="Resends of a command (same sequence number) before it fails."
    )


Address = Annotated[int, Field(ge=0, le=0xFFFF)]


class ModbusProfileConfig(Section):
    """A relay board's register map (drivers/modbus/profile.py): output n at output_address + n - 1, input n
    at input_address + n - 1. The defaults fit boards with relays on coils and inputs on discrete inputs."""

    output_table: Literal["coils", "holding-registers"] = Field(
        default="coils", description="Table the relays are in: 'coils' or 'holding-registers'."
    )
    output_address: Address = Field(default=0, description="Protocol address of output 1 (0-based).")
    output_on_value: int = Field(
        default=1, ge=1, le=0xFFFF, description="Value written to energise a holding-register output."
    )
    input_table: Literal["discrete-inputs", "coils", "input-registers", "holding-registers"] = Field(
        default="discrete-inputs",
        description="Table the inputs are read from; a register is active if non-zero.",
    )
    input_address: Address = Field(default=0, description="Protocol address of input 1 (0-based).")
    pulse_address: Address | None = Field(
        default=None,
        description=(
            "Holding register of output 1's timed pulse, if the board has one (writing N energises the "
            "output for N x pulse_unit_seconds, timed by the board): e.g. 512 (0x0200). Omit if none."
        ),
    )
    pulse_unit_seconds: float = Field(
        default=0.1, gt=0, le=60, allow_inf_nan=False, description="Seconds per unit of the pulse command."
    )
    pulse_command: Literal["write-register", "write-coil-value"] = Field(
        default="write-register",
        description=(
            "How the pulse is sent: 'write-register' (FC06, the time as the register value) or "
            "'write-coil-value' (FC05 with the time as the value: Waveshare's 'flash on')."
        ),
    )


class _ModbusController(ControllerBase):
    device_id: int = Field(default=1, ge=1, le=247, description="Modbus device (slave) id of the board.")
    poll_seconds: float = Field(
        default=0.1, ge=0.01, le=10, allow_inf_nan=False, description="Seconds between input polls."
    )
    timeout_seconds: float = Field(
        default=0.5, ge=0.05, le=10, allow_inf_nan=False, description="Seconds to wait for an answer."
    )
    profile: ModbusProfileConfig = Field(
        default_factory=ModbusProfileConfig, description="The board's register map."
    )


class ModbusTcpController(_ModbusController):
    """A Modbus TCP relay board (drivers/modbus/). Needs pymodbus (the `modbus` extra)."""

    type: Literal["modbus-tcp"] = Field(description="Controller kind.")
    host: Text = Field(description="Host name or address of the board (or its RS-485 gateway).")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port.")


class ModbusRtuController(_ModbusController):
    """A Modbus RTU relay board on RS-485 (drivers/modbus/). Boards on one port share one line and one lock.
    Needs pymodbus (the `modbus` extra)."""

    type: Literal["modbus-rtu"] = Field(description="Controller kind.")
    port: Text = Field(description="Serial port, e.g. /dev/ttyUSB0 (or a pyserial URL).")
    baudrate: int = Field(default=9600, ge=300, le=4_000_000, description="Serial speed, bits per second.")
    parity: Literal["N", "E", "O"] = Field(default="N", description="Parity: 'N', 'E' or 'O'.")


ControllerConfig = Annotated[
    SimulatedController | FirmwareBridgeController | ModbusTcpController | ModbusRtuController,
    Field(discriminator="type"),
]


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


class DoorConfig(Section):
    """[[doors]]: one lock, its relay output and its optional inputs on a controller."""

    id: Slug = Field(description="Door id, a slug; readers and access rules refer to it.")
    name: Text = Field(description="Human-readable door name.")
    controller: Slug = Field(description="Id of the controller the lock is wired to.")
    output: int = Field(ge=1, le=64, description="Relay output driving the lock, from 1.")
    unlock_seconds: float = Field(
        default=5.0,
        ge=0.5,
        le=300,
        allow_inf_nan=False,
        description="Seconds the lock stays released on a grant.",
    )
    held_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        allow_inf_nan=False,
        description="Seconds the door may stand open before a door-held alarm.",
    )
    lock_type: LockTypeValue = Field(
        default=LockType.FAIL_SECURE,
        description=(
            "'fail-secure' (strike: stays locked without power) or "
            "'fail-safe' (maglock: opens without power)."
        ),
    )
    mode: DoorModeValue = Field(
        default=DoorMode.NORMAL,
        description="Mode at start-up: 'normal', 'locked', 'unlocked' or 'lockdown'.",
    )
    contact_input: InputNumber | None = Field(
        default=None, description="Input of the door contact (closed = door shut); omit if none."
    )
    rex_input: InputNumber | None = Field(
        default=None, description="Input of the request-to-exit button; omit if none."
    )
    tamper_input: InputNumber | None = Field(
        default=None, description="Input of the tamper switch; omit if none."
    )


class FireAlarmConfig(Section):
    """[[fire_alarms]]: a fire panel's output wired to a controller input. While it is active the egress
    doors listed are held unlocked, whatever their mode (a site lockdown included)."""

    controller: Slug = Field(description="Id of the controller the fire panel is wired to.")
    input: InputNumber = Field(description="Input number of the fire-alarm contact (active = fire).")
    doors: list[Slug] = Field(min_length=1, description="Ids of the egress doors to release.")


class AntiPassbackConfig(Section):
    """[[anti_passback]]: an area whose entries and exits must alternate."""

    area: Slug = Field(description="Area name, as used by readers' `area`.")
    mode: AntiPassbackModeValue = Field(
        default=AntiPassbackMode.HARD,
        description="'hard' denies an out-of-order pass; 'soft' grants it and flags the event.",
    )
    timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        le=7 * 86400,
        allow_inf_nan=False,
        description="Seconds after which the same direction is allowed again.",
    )


# --- the root ----------------------------------------------------------------------------------------------


class CrossCheckError(ValueError):
    """Problems between sections, each with the key it is about. `load_config` prints one line each."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{_key_path(loc)}: {msg}" for loc, msg in self.problems))


class GatewayConfig(Section):
    """The whole config file. Build it with `load_config`, which also resolves `gateway.data_dir`."""

    site: SiteSection = Field(description="The property this gateway serves.")
    gateway: GatewaySection = Field(description="This gateway.")
    store: StoreSection = Field(default_factory=StoreSection, description="The SQLite store.")
    retention: RetentionSection = Field(
        default_factory=RetentionSection, description="How long synced events are kept."
    )
    backup: BackupSection = Field(default_factory=BackupSection, description="Scheduled database backups.")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="Logging.")
    secrets: SecretsSection = Field(
        default_factory=SecretsSection, description="Names of credentials to read; never their values."
    )
    mqtt: MqttSection | None = Field(default=None, description="Cloud link; absent means offline only.")
    metrics: MetricsSection | None = Field(
        default=None, description="Prometheus metrics endpoint; absent means none."
    )
    console: ConsoleSection | None = Field(
        default=None, description="The guard console (web page and REST API); absent means none."
    )
    homeassistant: HomeAssistantSection = Field(
        default_factory=HomeAssistantSection, description="Home Assistant MQTT discovery; off by default."
    )
    passes: PassesSection = Field(default_factory=PassesSection, description="Visitor passes (QR tokens).")
    face: FaceSection | None = Field(
        default=None, description="Face recognition; absent means no face doors."
    )
    controllers: list[ControllerConfig] = Field(default=[], description="Door controllers ([[controllers]]).")
    doors: list[DoorConfig] = Field(default=[], description="Doors ([[doors]]); at least one.")
    readers: list[ReaderConfig] = Field(default=[], description="Credential readers ([[readers]]).")
    anti_passback: list[AntiPassbackConfig] = Field(
        default=[], description="Anti-passback areas ([[anti_passback]])."
    )
    fire_alarms: list[FireAlarmConfig] = Field(
        default=[], description="Fire-alarm inputs and the egress doors they release ([[fire_alarms]])."
    )

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems = list(_cross_problems(self))
        if problems:
            raise CrossCheckError(problems)
        return self

    def to_site(self) -> Site:
        """The domain topology: doors, readers and anti-passback rules keyed by id."""
        return Site(
            id=self.site.id,
            timezone=self.site.timezone,
            doors={
                d.id: Door(
                    id=d.id,
                    name=d.name,
                    controller=d.controller,
                    output=d.output,
                    unlock_seconds=d.unlock_seconds,
                    held_seconds=d.held_seconds,
                    lock_type=d.lock_type,
                    mode=d.mode,
                    contact_input=d.contact_input,
                    rex_input=d.rex_input,
                    tamper_input=d.tamper_input,
                )
                for d in self.doors
            },
            readers={
                r.id: Reader(id=r.id, door_id=r.door, direction=r.direction, area=r.area)
                for r in self.readers
            },
            anti_passback={
                a.area: AntiPassbackRule(area=a.area, mode=a.mode, timeout_seconds=a.timeout_seconds)
                for a in self.anti_passback
            },
        )


def _bridge_reader_problems(cfg: GatewayConfig) -> Iterator[tuple[Loc, str]]:
    bridges = {c.id for c in cfg.controllers if isinstance(c, FirmwareBridgeController)}
    for i, r in enumerate(cfg.readers):
        if isinstance(r, FirmwareBridgeReader) and r.controller not in bridges:
            yield ("readers", i, "controller"), f"{r.controller!r} is not a firmware-bridge controller"


def _cross_problems(cfg: GatewayConfig) -> Iterator[tuple[Loc, str]]:
    yield from _duplicates("controllers", "id", "controller", [c.id for c in cfg.controllers])
    yield from _duplicates("doors", "id", "door", [d.id for d in cfg.doors])
    yield from _duplicates("readers", "id", "reader", [r.id for r in cfg.readers])
    yield from _bridge_reader_problems(cfg)
    yield from _duplicates("anti_passback", "area", "anti-passback area", [a.area for a in cfg.anti_passback])
    if not cfg.doors:
        yield ("doors",), "at least one [[doors]] entry is required"
    if cfg.homeassistant.enabled and cfg.homeassistant.use_cloud_broker and cfg.mqtt is None:
        yield ("homeassistant", "use_cloud_broker"), "needs an [mqtt] section to take the broker from"

    controllers: dict[str, ControllerBase] = {}
    for c in cfg.controllers:
        controllers.setdefault(c.id, c)
    outputs: dict[tuple[str, int], int] = {}  # (controller, output) -> index of the first door using it
    inputs: dict[tuple[str, int], Loc] = {}
    for i, door in enumerate(cfg.doors):
        ctrl = controllers.get(door.controller)
        if ctrl is None:
            yield ("doors", i, "controller"), _unknown("controller", door.controller, controllers)
            continue
        if door.output > ctrl.outputs:
            yield (
                ("doors", i, "output"),
                f"controller {ctrl.id!r} has outputs 1..{ctrl.outputs}, not {door.output}",
            )
        else:
            first = outputs.setdefault((ctrl.id, door.output), i)
            if first != i:
                yield (
                    ("doors", i, "output"),
                    f"output {door.output} of controller {ctrl.id!r} is already used by doors[{first}]",
                )
        wired = (
            ("contact_input", door.contact_input),
            ("rex_input", door.rex_input),
            ("tamper_input", door.tamper_input),
        )
        for key, number in wired:
            if number is None:
                continue
            loc: Loc = ("doors", i, key)
            if number > ctrl.inputs:
                yield loc, f"controller {ctrl.id!r} has {_inputs_range(ctrl.inputs)}, not {number}"
                continue
            taken = inputs.setdefault((ctrl.id, number), loc)
            if taken != loc:
                yield loc, f"input {number} of controller {ctrl.id!r} is already used by {_key_path(taken)}"

    door_ids = {d.id for d in cfg.doors}
    for i, fire in enumerate(cfg.fire_alarms):
        ctrl = controllers.get(fire.controller)
        if ctrl is None:
            yield ("fire_alarms", i, "controller"), _unknown("controller", fire.controller, controllers)
        elif fire.input > ctrl.inputs:
            yield ("fire_alarms", i, "input"), f"controller {ctrl.id!r} has {_inputs_range(ctrl.inputs)}"
        elif (used_by := inputs.get((ctrl.id, fire.input))) is not None:
            yield ("fire_alarms", i, "input"), f"input {fire.input} is already used by {_key_path(used_by)}"
        for j, door_id in enumerate(fire.doors):
            if door_id not in door_ids:
                yield ("fire_alarms", i, "doors", j), _unknown("door", door_id, door_ids)
    areas = {a.area for a in cfg.anti_passback}
    for i, reader in enumerate(cfg.readers):
        if reader.door not in door_ids:
            yield ("readers", i, "door"), _unknown("door", reader.door, door_ids)
        if reader.area is not None and reader.area not in areas:
            yield ("readers", i, "area"), f"no [[anti_passback]] entry for area {reader.area!r}"
    used = {r.area for r in cfg.readers}
    for i, rule in enumerate(cfg.anti_passback):
        if rule.area not in used:
            yield ("anti_passback", i, "area"), f"no reader has area {rule.area!r}"
    passes = cfg.passes
    for i, door_id in enumerate(passes.walkin_doors):
        if door_id not in door_ids:
            yield ("passes", "walkin_doors", i), _unknown("door", door_id, door_ids)
    if passes.walkin_hours > passes.walkin_max_hours:
        yield ("passes", "walkin_hours"), f"is more than walkin_max_hours ({passes.walkin_max_hours})"
    if passes.walkin_uses > passes.walkin_max_uses:
        yield ("passes", "walkin_uses"), f"is more than walkin_max_uses ({passes.walkin_max_uses})"
    yield from _face_problems(cfg)


def _face_problems(cfg: GatewayConfig) -> Iterator[tuple[Loc, str]]:
    face_doors = {r.door for r in cfg.readers if isinstance(r, FaceCameraReader)}
    other_doors = {r.door for r in cfg.readers if not isinstance(r, FaceCameraReader)}
    for i, reader in enumerate(cfg.readers):
        if isinstance(reader, FaceCameraReader):
            if cfg.face is None:
                yield ("readers", i, "type"), "a face-camera reader needs a [face] section"
            elif reader.door not in other_doors:
                yield (
                    ("readers", i, "door"),
                    f"door {reader.door!r} needs a non-face reader too (card, PIN, BLE)",
                )
    if cfg.face is not None:
        for i, door_id in enumerate(cfg.face.second_factor_doors):
            if door_id not in face_doors:
                yield ("face", "second_factor_doors", i), f"door {door_id!r} has no face-camera reader"


def _duplicates(section: str, key: str, what: str, ids: Sequence[str]) -> Iterator[tuple[Loc, str]]:
    first: dict[str, int] = {}
    for i, value in enumerate(ids):
        j = first.setdefault(value, i)
        if j != i:
            yield (section, i, key), f"duplicate {what} {value!r} (first at {section}[{j}])"


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {value!r}{hint}"


def _inputs_range(count: int) -> str:
    return f"inputs 1..{count}" if count else "no inputs"


# --- loading -----------------------------------------------------------------------------------------------


def load_config(path: Path) -> GatewayConfig:
    """Read, parse and validate the config file. Raises ConfigError listing every problem, one per line.

    `gateway.data_dir` comes back absolute. Precedence: $STATE_DIRECTORY (its first entry if systemd gives
    several, colon-separated), then `data_dir` from the file (relative to the file's directory), then the
    default /var/lib/menwei.
    """
    data = _read_toml(path)
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("\n".join(f"{path}: {line}" for line in _problems(err, data))) from None
    data_dir = _data_dir(config.gateway.data_dir, path)
    return config.model_copy(update={"gateway": config.gateway.model_copy(update={"data_dir": data_dir})})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror or type(err).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {_toml_error(str(err))}") from None


_TOML_AT = re.compile(r"(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)", re.DOTALL)


def _toml_error(message: str) -> str:
    if m := _TOML_AT.fullmatch(message):
        return f"line {m['line']}, column {m['col']}: invalid TOML: {m['msg']}"
    return f"invalid TOML: {message.replace('(at end of document)', 'at end of file')}"


def _data_dir(configured: Path, config_path: Path) -> Path:
    state = os.environ.get(STATE_DIRECTORY, "").split(":", 1)[0]
    if state:
        return Path(state).absolute()
    if configured.is_absolute():
        return configured
    return (config_path.parent / configured).resolve()


def _problems(err: ValidationError, data: object) -> list[str]:
    lines: list[str] = []
    for detail in err.errors(include_url=False):
        cross = detail.get("ctx", {}).get("error")
        if isinstance(cross, CrossCheckError):
            lines.extend(f"{_key_path(loc)}: {msg}" for loc, msg in cross.problems)
            continue
        key, msg = _describe(detail, data)
        lines.append(f"{key}: {msg}" if key else msg)
    return lines


def _describe(detail: ErrorDetails, data: object) -> tuple[str, str]:
    """Turn one pydantic error into (dotted key, message) in the file's own terms."""
    loc = detail["loc"]
    key = _key_path(loc, data)
    ctx = detail.get("ctx", {})
    match detail["type"]:
        case "extra_forbidden":
            return key, "unknown key"
        case "missing":
            return key, "missing required key"
        case "union_tag_invalid":
            return _join(key, "type"), f"unknown type {ctx['tag']!r}; expected one of: {ctx['expected_tags']}"
        case "union_tag_not_found" if isinstance(detail["input"], Mapping):
            return _join(key, "type"), "missing required key"
        case "model_type" | "model_attributes_type" | "dict_type" | "union_tag_not_found":
            return key, "should be a table"
        case "path_type":
            return key, "should be a path (a string)"
        case "list_type" if len(loc) == 1:
            return key, f"should be an array of tables, written [[{key}]]"
    return key, detail["msg"].removeprefix("Value error, ")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_path(loc: Loc, data: object = None) -> str:
    """('doors', 1, 'unlock_secnds') -> 'doors[1].unlock_secnds'.

    With the parsed file as `data`, drops the tag pydantic puts in the path of a tagged union member
    (controllers[0].simulated.outputs is controllers[0].outputs in the file).
    """
    path = ""
    node = data
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            continue
        if isinstance(node, Mapping) and item not in node and node.get("type") == item:
            continue
        part = item if _BARE_KEY.fullmatch(item) else f'"{item}"'
        path = _join(path, part)
        node = node.get(item) if isinstance(node, Mapping) else None
    return path


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- logging the config ------------------------------------------------------------------------------------


def redacted_dict(model: BaseModel) -> dict[str, Any]:
    """The model as JSON-able data, safe to log: every SecretStr / SecretBytes / Secret value is masked.

    It walks the fields itself rather than trusting serializers, so a custom serializer cannot reveal one.
    """
    return {name: _redact(getattr(model, name)) for name in type(model).model_fields}


def _redact(value: object) -> Any:
    if isinstance(value, SecretStr | SecretBytes | Secret):
        return MASK
    if isinstance(value, BaseModel):
        return redacted_dict(value)
    if isinstance(value, Enum):
        return _redact(value.value)
    if isinstance(value, Mapping):
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
