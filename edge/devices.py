"""Glue between doors and device drivers: builds drivers from config, maps inputs to doors, relay commands to
outputs, and device faults to alarms. The only place that knows both edge.model and drivers."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from drivers.door_controller import DoorController, InputChange
from drivers.reader import Reader, ReaderCondition
from edge.clock import Clock
from edge.config import (
    BleReaderConfig,
    GatewayConfig,
    LineScannerReader,
    ModbusRtuController,
    ModbusTcpController,
    OsdpReaderConfig,
    QrCameraReader,
    SerialScannerReader,
    SimulatedReader,
    WiegandSerialReader,
)
from edge.door import DoorRunner
from edge.errors import ConfigError, DeviceError
from edge.events import AlarmEvent, AlarmKind, Event, EventBus, RelayCommand
from edge.model import Door, LockType
from edge.secrets import read_secret, read_secret_bytes

log = logging.getLogger(__name__)


class InputRole(StrEnum):
    CONTACT = "contact"  # active = door open
    EXIT = "exit"  # active = button pressed
    TAMPER = "tamper"  # active = enclosure opened


@dataclass(slots=True)
class Devices:
    controllers: dict[str, DoorController] = field(default_factory=dict)
    readers: dict[str, Reader] = field(default_factory=dict)
    fire_inputs: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)  # -> egress doors


def relay_level(door: Door, unlock: bool) -> bool:
    """Whether the output is energised. A fail-safe maglock holds while powered; a fail-secure strike opens
    while powered."""
    return unlock if door.lock_type is LockType.FAIL_SECURE else not unlock


class DoorIO:
    """Connects the door runners to their controllers: inputs in, relay commands out, faults as alarms."""

    def __init__(
        self,
        runners: dict[str, DoorRunner],
        controllers: dict[str, DoorController],
        bus: EventBus,
        clock: Clock,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        fire_inputs: Mapping[tuple[str, int], Sequence[str]] | None = None,
    ) -> None:
        self._runners = runners
        self._fire_inputs = {key: tuple(doors) for key, doors in (fire_inputs or {}).items()}
        self._fire_active: set[tuple[str, int]] = set()
        self._controllers = controllers
        self._bus = bus
        self._clock = clock
        self._spawn = spawn
        self._inputs: dict[tuple[str, int], tuple[str, InputRole]] = {}
        self._online: dict[str, bool] = {}  # last reported state; a first "online" is not news
        for runner in runners.values():
            door = runner.door
            for number, role in (
                (door.contact_input, InputRole.CONTACT),
                (door.rex_input, InputRole.EXIT),
                (door.tamper_input, InputRole.TAMPER),
            ):
                if number is not None:
                    self._inputs[(door.controller, number)] = (door.id, role)
        for controller in controllers.values():
            controller.bind(self._on_input, self._on_online)
        self._unsubscribe = bus.subscribe(RelayCommand, self._on_relay)

    def close(self) -> None:
        self._unsubscribe()

    def _on_input(self, change: InputChange) -> None:
        if (change.controller_id, change.input) in self._fire_inputs:
            self._fire((change.controller_id, change.input), change.active)
            return
        target = self._inputs.get((change.controller_id, change.input))
        if target is None:
            log.debug("input %s/%d is not wired to a door", change.controller_id, change.input)
            return
        door_id, role = target
        runner = self._runners[door_id]
        if role is InputRole.CONTACT:
            runner.contact(change.active)
        elif role is InputRole.EXIT:
            if change.active:
                runner.exit_request()
        else:
            runner.tamper(change.active)

    def _released(self) -> set[str]:
        return {door_id for key in self._fire_active for door_id in self._fire_inputs[key]}

    def _fire(self, key: tuple[str, int], active: bool) -> None:
        """A fire-alarm input: its egress doors are held unlocked below the door machines, so no mode (not
        even a site lockdown) and no relock timer can lock them while it lasts."""
        before = self._released()
        if active == (key in self._fire_active):
            return
        (self._fire_active.add if active else self._fire_active.discard)(key)
        after = self._released()
        log.warning(
            "fire alarm on %s/%d %s",
            key[0],
            key[1],
            "ACTIVE: releasing egress doors" if active else "cleared",
        )
        self._bus.publish(
            AlarmEvent(
                at=self._clock.now(),
                kind=AlarmKind.FIRE_ALARM,
                active=active,
                device_id=key[0],
                detail=f"input {key[1]}",
            )
        )
        for door_id in after ^ before:
            runner = self._runners[door_id]
            unlock = door_id in after or runner.machine.relay_unlocked
            self._drive(runner.door, relay_level(runner.door, unlock), None)

    def reader_condition(self, reader_id: str, condition: ReaderCondition, active: bool, detail: str) -> None:
        """A reader's fault (offline, tamper) as an alarm; the reader reports each change once."""
        kind = AlarmKind.TAMPER if condition is ReaderCondition.TAMPER else AlarmKind.DEVICE_OFFLINE
        (log.error if active else log.info)("reader %s %s: %s", reader_id, condition.value, detail)
        self._bus.publish(
            AlarmEvent(at=self._clock.now(), kind=kind, active=active, device_id=reader_id, detail=detail)
        )

    def _on_online(self, controller_id: str, online: bool, detail: str) -> None:
        previous = self._online.get(controller_id)
        self._online[controller_id] = online
        if previous == online or (previous is None and online):
            return
        if online:
            log.info("controller %s recovered (%s)", controller_id, detail)
        else:
            log.error("controller %s offline: %s", controller_id, detail)
        self._bus.publish(
            AlarmEvent(
                at=self._clock.now(),
                kind=AlarmKind.DEVICE_OFFLINE,
                active=not online,
                device_id=controller_id,
                detail=detail,
            )
        )
        if online:  # a board that lost power lost its outputs too: drive every door back to its state
            released = self._released()
            for runner in self._runners.values():
                door = runner.door
                if door.controller == controller_id:
                    unlock = door.id in released or runner.machine.relay_unlocked
                    self._drive(door, relay_level(door, unlock), None)

    def _on_relay(self, event: Event) -> None:
        assert isinstance(event, RelayCommand)
        door = self._runners[event.door_id].door
        if door.id in self._released():  # fire: stays released
            self._drive(door, relay_level(door, True), None)
        else:
            self._drive(door, relay_level(door, event.unlock), event.seconds)

    def _drive(self, door: Door, level: bool, pulse: float | None) -> None:
        controller = self._controllers.get(door.controller)
        if controller is None:
            log.error("door %s: controller %s is not running", door.id, door.controller)
            return
        self._spawn(self._write(controller, door, level, pulse))

    async def _write(self, controller: DoorController, door: Door, level: bool, pulse: float | None) -> None:
        try:
            await controller.set_output(door.output, level, pulse)
        except DeviceError as err:
            # The door keeps its previous state; the controller's own offline alarm tells the operator.
            log.error("door %s: writing output %d failed: %s", door.id, door.output, err)


def build_devices(config: GatewayConfig) -> Devices:
    """Create the drivers the config names. Hardware libraries are imported inside their drivers, so a gateway
    without (say) BLE installs and runs without bleak, and one without cameras runs without OpenCV. A reader
    kind whose library is missing, or a camera password that cannot be read, raises ConfigError now rather
    than failing in a driver thread later."""
    from edge.config import FirmwareBridgeController as FirmwareBridgeConfig
    from edge.config import FirmwareBridgeReader as FirmwareBridgeReaderConfig

    devices = Devices()
    buses: dict[str, Any] = {}  # one ModbusBus per serial port or TCP endpoint, shared by its boards
    for c in config.controllers:
        if isinstance(c, FirmwareBridgeConfig):
            from firmware_bridge.controller import FirmwareBridgeController
            from firmware_bridge.link import LinkTiming

            timing = LinkTiming(c.heartbeat_seconds, c.missed_heartbeats, c.ack_timeout_seconds, c.retries)
            devices.controllers[c.id] = FirmwareBridgeController(
                c.id, c.port, baudrate=c.baudrate, outputs=c.outputs, inputs=c.inputs, timing=timing
            )
            continue
        if c.type == "simulated":
            from drivers.sim.door_controller import SimulatedDoorController

            devices.controllers[c.id] = SimulatedDoorController(c.id, outputs=c.outputs, inputs=c.inputs)
        elif isinstance(c, ModbusTcpController | ModbusRtuController):
            devices.controllers[c.id] = _modbus_controller(c, buses)
    for fire in config.fire_alarms:
        devices.fire_inputs[(fire.controller, fire.input)] = tuple(fire.doors)
    for i, r in enumerate(config.readers):
        if isinstance(r, FirmwareBridgeReaderConfig):
            from firmware_bridge.controller import FirmwareBridgeController as BridgeBoard
            from firmware_bridge.reader import FirmwareBridgeReader

            from drivers.wiegand.decoder import WiegandFormat

            board = devices.controllers.get(r.controller)
            if not isinstance(board, BridgeBoard):
                raise ConfigError(f"reader {r.id!r}: {r.controller!r} is not a firmware-bridge controller")
            devices.readers[r.id] = FirmwareBridgeReader(
                r.id,
                board,
                board_reader=r.board_reader,
                card_format=WiegandFormat(r.card_format),
                facility=r.facility_code,
                led=r.led,
                pin_timeout=r.pin_timeout_seconds,
            )
            continue
        match r:
            case SimulatedReader():
                from drivers.sim.reader import SimulatedReader as SimReader

                devices.readers[r.id] = SimReader(r.id)
            case QrCameraReader():
                if importlib.util.find_spec("cv2") is None:
                    raise ConfigError(
                        f"readers[{i}]: type 'qr-camera' needs OpenCV, which is not installed "
                        "(install menwei with the 'qr' extra)"
                    )
                from drivers.qr.camera import QrCameraReader as CameraDriver

                if r.spool:
                    from drivers.qr.camera import SpoolFolderSource

                    spool = partial(SpoolFolderSource, Path(str(r.source)))
                    devices.readers[r.id] = CameraDriver(r.id, spool, max_fps=r.fps)
                else:
                    devices.readers[r.id] = CameraDriver(r.id, camera_source(r), max_fps=r.fps)
            case LineScannerReader():
                from drivers.qr.line_scanner import LineScannerReader as WedgeDriver

                devices.readers[r.id] = WedgeDriver(r.id, path=r.path)
            case SerialScannerReader():
                from drivers.qr.line_scanner import SerialScannerReader as SerialDriver

                devices.readers[r.id] = SerialDriver(r.id, r.port, baudrate=r.baudrate)
            case WiegandSerialReader():
                devices.readers[r.id] = _wiegand_reader(r)
            case OsdpReaderConfig():
                devices.readers[r.id] = _osdp_reader(r, i)
            case BleReaderConfig():
                devices.readers[r.id] = _ble_reader(r, i)
    if config.face is not None:
        from drivers.face.build import face_readers

        devices.readers.update(face_readers(config))
    return devices


def _modbus_controller(c: ModbusTcpController | ModbusRtuController, buses: dict[str, Any]) -> DoorController:
    if importlib.util.find_spec("pymodbus") is None:
        raise ConfigError(
            f"controller {c.id!r}: type {c.type!r} needs pymodbus, which is not installed "
            "(install menwei with the 'modbus' extra)"
        )
    from drivers.modbus.bus import ModbusBus, SerialLine, TcpLine
    from drivers.modbus.controller import ModbusDoorController
    from drivers.modbus.profile import BoardProfile, PulseCommand, PulseKind, Table

    line: TcpLine | SerialLine
    if isinstance(c, ModbusTcpController):
        line = TcpLine(c.host, c.port)
        key = f"tcp://{c.host}:{c.port}"
    else:
        line = SerialLine(c.port, baudrate=c.baudrate, parity=c.parity)
        key = c.port
    bus = buses.setdefault(key, ModbusBus(line, timeout=c.timeout_seconds))
    if bus.line != line:
        raise ConfigError(f"controller {c.id!r}: line settings differ from another controller on {key}")
    p = c.profile
    profile = BoardProfile(
        output_table=Table(p.output_table),
        output_address=p.output_address,
        output_on_value=p.output_on_value,
        input_table=Table(p.input_table),
        input_address=p.input_address,
        pulse=None
        if p.pulse_address is None
        else PulseCommand(p.pulse_address, p.pulse_unit_seconds, kind=PulseKind(p.pulse_command)),
    )
    return ModbusDoorController(
        c.id,
        bus,
        device_id=c.device_id,
        outputs=c.outputs,
        inputs=c.inputs,
        profile=profile,
        poll_seconds=c.poll_seconds,
    )


def _wiegand_reader(r: WiegandSerialReader) -> Reader:
    from drivers.wiegand.converter import WiegandConverterReader
    from drivers.wiegand.decoder import WiegandFormat

    return WiegandConverterReader(
        r.id,
        r.port,
        card_format=WiegandFormat(r.card_format),
        line_format=r.line_format,
        baudrate=r.baudrate,
        facility=r.facility_code,
        pin_timeout=r.pin_timeout_seconds,
    )


def _ble_reader(r: BleReaderConfig, index: int) -> Reader:
    if importlib.util.find_spec("bleak") is None:
        raise ConfigError(
            f"readers[{index}]: type 'ble' needs bleak, which is not installed (install menwei with the 'ble' extra)"
        )
    from drivers.ble.reader import BleReader

    keys: dict[str, bytes] = {}
    if r.keys_credential is not None:  # the fallback until the cloud's list (cloud_sync.ble_keys) arrives
        secret = read_secret(r.keys_credential)
        assert secret is not None  # required: absent raises ConfigError
        keys = ble_keys(r.keys_credential, secret.get_secret_value())
    return BleReader(
        r.id,
        keys,
        company_id=r.company_id,
        rssi_threshold=r.rssi_threshold,
    )


def ble_keys(name: str, text: str) -> dict[str, bytes]:
    """Phone keys from a credential: 'key-id hex-key' per line; blank lines and '#' comments are skipped. The
    fallback until the cloud's list arrives on ble/keys (cloud_sync.ble_keys), which then replaces it."""
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            key = bytes.fromhex(parts[1])
        except ValueError:
            raise ConfigError(f"secret {name!r} line {number}: expected 'key-id hex-key'") from None
        if len(key) != 32:
            raise ConfigError(f"secret {name!r} line {number}: a phone key is 32 bytes (64 hex digits)")
        keys[parts[0]] = key
    return keys


def _osdp_reader(r: OsdpReaderConfig, index: int) -> Reader:
    if importlib.util.find_spec("osdp_sys") is None:
        raise ConfigError(
            f"readers[{index}]: type 'osdp' needs libosdp, which is not installed (install menwei with the "
            "'osdp' extra)"
        )
    from drivers.osdp.channel import SerialChannel
    from drivers.osdp.reader import OsdpReader
    from drivers.wiegand.decoder import WiegandFormat

    key = read_secret_bytes(r.key_credential, length=16)
    assert key is not None  # required: absent raises ConfigError
    port, baudrate = r.port, r.baudrate
    return OsdpReader(
        r.id,
        lambda: SerialChannel(port, baudrate),
        address=r.address,
        key=key.get_secret_value(),
        card_format=WiegandFormat(r.card_format),
        facility=r.facility_code,
        pin_timeout=r.pin_timeout_seconds,
    )


def camera_source(reader: QrCameraReader) -> int | str | Path:
    """What the camera driver opens: the configured source, with the password credential (if any) put into
    the URL's user part. The result may hold a secret: it goes to the driver only, never to a log."""
    source = reader.source
    if isinstance(source, int):
        return source
    if "://" not in source:
        return Path(source)
    if reader.password_credential is None:
        return source
    secret = read_secret(reader.password_credential)
    assert secret is not None  # required: absent raises ConfigError
    parts = urlsplit(source)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(secret.get_secret_value(), safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
