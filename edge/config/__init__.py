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

Layout: `fields.py` (field types, the strict `Section` base, key paths in messages), `sections.py` (the
gateway-wide sections), `controllers.py` and `readers.py` (one model per device kind), `doors.py` (doors, fire
alarms, anti-passback), `root.py` (`GatewayConfig` and the checks between sections), `loading.py`
(`load_config`, error messages, `redacted_dict`). Import from `edge.config`, not from the modules.
"""

from __future__ import annotations

from edge.config.controllers import (
    Address,
    ControllerBase,
    ControllerConfig,
    FirmwareBridgeController,
    ModbusProfileConfig,
    ModbusRtuController,
    ModbusTcpController,
    SimulatedController,
)
from edge.config.doors import AntiPassbackConfig, DoorConfig, FireAlarmConfig
from edge.config.fields import (
    DEFAULT_DATA_DIR,
    MASK,
    STATE_DIRECTORY,
    AntiPassbackModeValue,
    CredentialName,
    DirectionValue,
    DoorModeValue,
    InputNumber,
    LaxPath,
    Loc,
    LockTypeValue,
    Section,
    Slug,
    Text,
    TimeZoneName,
)
from edge.config.loading import load_config, redacted_dict
from edge.config.readers import (
    BleReaderConfig,
    FaceCameraReader,
    FirmwareBridgeReader,
    LineScannerReader,
    OsdpReaderConfig,
    QrCameraReader,
    ReaderBase,
    ReaderConfig,
    SerialScannerReader,
    SimulatedReader,
    WiegandSerialReader,
)
from edge.config.root import CrossCheckError, GatewayConfig
from edge.config.sections import (
    HA_BROKER_KEYS,
    BackupSection,
    ConsoleSection,
    FaceSection,
    GatewaySection,
    HomeAssistantSection,
    LoggingSection,
    MetricsSection,
    MqttSection,
    PassesSection,
    RetentionSection,
    SecretsSection,
    SiteSection,
    StoreSection,
    TopicPrefix,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "HA_BROKER_KEYS",
    "MASK",
    "STATE_DIRECTORY",
    "Address",
    "AntiPassbackConfig",
    "AntiPassbackModeValue",
    "BackupSection",
    "BleReaderConfig",
    "ConsoleSection",
    "ControllerBase",
    "ControllerConfig",
    "CredentialName",
    "CrossCheckError",
    "DirectionValue",
    "DoorConfig",
    "DoorModeValue",
    "FaceCameraReader",
    "FaceSection",
    "FireAlarmConfig",
    "FirmwareBridgeController",
    "FirmwareBridgeReader",
    "GatewayConfig",
    "GatewaySection",
    "HomeAssistantSection",
    "InputNumber",
    "LaxPath",
    "LineScannerReader",
    "Loc",
    "LockTypeValue",
    "LoggingSection",
    "MetricsSection",
    "ModbusProfileConfig",
    "ModbusRtuController",
    "ModbusTcpController",
    "MqttSection",
    "OsdpReaderConfig",
    "PassesSection",
    "QrCameraReader",
    "ReaderBase",
    "ReaderConfig",
    "RetentionSection",
    "SecretsSection",
    "Section",
    "SerialScannerReader",
    "SimulatedController",
    "SimulatedReader",
    "SiteSection",
    "Slug",
    "StoreSection",
    "Text",
    "TimeZoneName",
    "TopicPrefix",
    "WiegandSerialReader",
    "load_config",
    "redacted_dict",
]
