"""The gateway-wide sections: [site], [gateway], [store], [retention], [backup], [logging], [metrics],
[console], [secrets], [mqtt], [homeassistant], [passes] and [face]."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edge.config.fields import DEFAULT_DATA_DIR, CredentialName, LaxPath, Section, Slug, Text, TimeZoneName

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


class BrokerSection(Section):
    """How to reach an MQTT broker: the keys [mqtt] and [homeassistant] share."""

    host: Text = Field(default="127.0.0.1", description="Broker host name or address.")
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


class MqttSection(BrokerSection):
    """[mqtt]: the link to the property's cloud (docs/contract.md). Absent: the gateway runs offline only."""

    client_id: Text | None = Field(
        default=None,
        description="MQTT client id; default 'menwei-<site>-<gateway>'. Must be unique per broker.",
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
HA_BROKER_KEYS = tuple(BrokerSection.model_fields)


class HomeAssistantSection(BrokerSection):
    """[homeassistant]: MQTT discovery for a site's Home Assistant (cloud-sync/homeassistant.py). Off by default."""

    enabled: bool = Field(default=False, description="Publish the doors to Home Assistant.")
    use_cloud_broker: bool = Field(
        default=False,
        description="Reach the broker of [mqtt] with its connection settings (a separate MQTT client).",
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
