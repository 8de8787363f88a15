"""A door-controller board on the firmware bridge, behind the same DoorController interface as the Modbus and
simulated ones: outputs written as energised or not, inputs reported as InputChange, online as the link.

- A write with pulse_seconds becomes one PULSE command: the board times it, so the door relocks even if the
  gateway dies. A write without becomes SET_OUTPUT.
- The level each output should rest at (the last level set, or the level a pulse returns to) is kept and
  written again whenever the link comes up or the board has reset: a reset drops every relay, and a
  fail-safe maglock must not stay released because of it; a write that failed while the link was down is made
  good the same way. (A pulse still running on a board that merely lost the link is cut short by that:
  towards locked.)
- Input levels are re-read at the same moments, and only real changes are reported: events lost while the
  cable was out are made good, and a replayed event changes nothing.
- Reader data (Wiegand bits, keypad keys) from the board goes to the reader driver attached to that reader
  input (firmware_bridge.reader), or to `on_reader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from firmware_bridge import protocol as p
from firmware_bridge.errors import BridgeError, BridgeErrorReason
from firmware_bridge.frame import Frame
from firmware_bridge.link import Link, LinkTiming
from firmware_bridge.protocol import Op

from drivers.door_controller import DoorController, InputChange
from drivers.errors import DriverError, DriverErrorReason

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReaderData:
    controller_id: str
    reader: int
    format: int  # protocol.ReaderFormat
    bits: int
    data: bytes


_REASONS = {
    BridgeErrorReason.LINK_DOWN: DriverErrorReason.OFFLINE,
    BridgeErrorReason.PORT: DriverErrorReason.OFFLINE,
    BridgeErrorReason.TIMEOUT: DriverErrorReason.TIMEOUT,
    BridgeErrorReason.NAK: DriverErrorReason.BAD_ARGUMENT,
    BridgeErrorReason.PROTOCOL: DriverErrorReason.PROTOCOL,
}


class FirmwareBridgeController(DoorController):
    def __init__(
        self,
        controller_id: str,
        port: str,
        *,
        baudrate: int = 115200,
        outputs: int = 4,
        inputs: int = 8,
        timing: LinkTiming | None = None,
    ) -> None:
        super().__init__(controller_id)
        self.outputs = outputs
        self.inputs = inputs
        self.link = Link(
            port,
            baudrate=baudrate,
            timing=timing,
            on_event=self._on_event,
            on_state=self._on_state,
            on_boot=self._on_boot,
            name=controller_id,
        )
        self.on_reader: Callable[[ReaderData], None] = lambda data: None  # readers not attached by number
        self._readers: dict[int, Callable[[ReaderData], None]] = {}
        self._levels: dict[int, bool] = {}
        self._rest: dict[int, bool] = {}  # output -> the level it should rest at
        self._writes = 0  # counts writes, so a resync does not undo a write made while it runs
        self._written: dict[int, int] = {}  # output -> value of _writes at its last write
        self._sync: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.link.start()

    async def stop(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
        await self.link.stop()

    async def set_output(self, output: int, energised: bool, pulse_seconds: float | None = None) -> None:
        if not 1 <= output <= self.outputs:
            raise DriverError(self.id, DriverErrorReason.BAD_ARGUMENT, f"no output {output}")
        self._rest[output] = energised if pulse_seconds is None else not energised
        self._writes += 1
        self._written[output] = self._writes
        try:
            if pulse_seconds is not None:
                ms = max(1, min(round(pulse_seconds * 1000), p.MAX_PULSE_MS))
                await self.link.request(Op.PULSE, p.pack_pulse(output, energised, ms))
            else:
                await self.link.request(Op.SET_OUTPUT, p.pack_output(output, energised))
        except BridgeError as err:
            raise DriverError(self.id, _REASONS[err.reason], str(err)) from err

    def attach_reader(self, number: int, callback: Callable[[ReaderData], None]) -> None:
        """Send the board's reader input `number` to callback (firmware_bridge.reader does this)."""
        self._readers[number] = callback

    # --- from the link -------------------------------------------------------------------------------------

    def _on_state(self, up: bool, detail: str) -> None:
        if up:
            self._resync()  # reports online once the input levels are known
        else:
            self.online = False
            self._on_online(self.id, False, detail)

    def _on_boot(self, boot_id: int) -> None:
        if self.online:
            self._resync()

    def _resync(self) -> None:
        if self._sync is None or self._sync.done():
            self._sync = asyncio.get_running_loop().create_task(self._resync_board(), name=f"{self.id}-sync")

    async def _resync_board(self) -> None:
        try:
            mark = self._writes
            for output in list(self._rest):
                if self._written.get(output, 0) > mark:
                    continue  # written (e.g. a grant's pulse) since the resync began: that write stands
                await self.link.request(Op.SET_OUTPUT, p.pack_output(output, self._rest[output]))
            levels = p.unpack_inputs(await self.link.request(Op.INPUTS))
        except (BridgeError, ValueError, IndexError) as err:
            log.debug("%s: resync failed: %s", self.id, err)
            return  # the link is down again; the next "up" retries
        for number, active in enumerate(levels, start=1):
            self._input(number, active)
        if not self.online:
            self.online = True
            self._on_online(self.id, True, "link up")

    def _input(self, number: int, active: bool) -> None:
        previous = self._levels.get(number, False)  # the gateway assumes inputs start inactive
        self._levels[number] = active
        if previous != active:
            self._on_input(InputChange(self.id, number, active))

    def _on_event(self, frame: Frame) -> None:
        try:
            if frame.opcode == Op.EV_INPUT:
                self._input(*p.unpack_input_event(frame.payload))
            elif frame.opcode == Op.EV_READER:
                reader, fmt, bits, data = p.unpack_reader_event(frame.payload)
                self._readers.get(reader, self.on_reader)(ReaderData(self.id, reader, fmt, bits, data))
            elif frame.opcode == Op.EV_BOOT:
                _, cause, slot, version = p.unpack_boot(frame.payload)
                log.info(
                    "%s: board booted firmware %s from slot %d (reset cause %d)",
                    self.id,
                    version,
                    slot,
                    cause,
                )
        except (ValueError, IndexError) as err:
            log.warning("%s: unreadable event 0x%02x: %s", self.id, frame.opcode, err)
