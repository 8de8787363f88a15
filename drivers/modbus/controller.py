"""ModbusDoorController: a relay board on Modbus as a DoorController.

A background task polls the inputs at a fixed rate and reports changes; writes go straight to the bus (under
its lock, so a write waits at most one poll frame). When the board stops answering the task reports it
offline once (error), retries with capped exponential backoff (debug while the fault lasts), and reports it
recovered (info) on the first good poll. A board answering with Modbus exceptions is reachable, so it stays
online, but every exception is counted and the first of a run is logged.

On a grant with a pulse, a board with a timed-pulse command is asked to time the pulse itself, so a fail-secure
door relocks even if the gateway dies mid-unlock. On stop every output is de-energised: a fail-safe maglock
then releases and a fail-secure strike stays locked, as each door's lock type says it should without us.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

from drivers.door_controller import DoorController, InputChange
from drivers.errors import DriverError, DriverErrorReason
from drivers.modbus.bus import ModbusBus
from drivers.modbus.profile import BoardProfile, PulseKind, Table

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def next(self, current: float) -> float:
        return min(self.maximum, current * self.factor)


class ModbusDoorController(DoorController):
    def __init__(
        self,
        controller_id: str,
        bus: ModbusBus,
        *,
        device_id: int = 1,
        outputs: int,
        inputs: int,
        profile: BoardProfile | None = None,
        poll_seconds: float = 0.1,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(controller_id)
        self.bus = bus
        bus.users += 1
        self.device_id = device_id
        self.outputs = outputs
        self.inputs = inputs
        self.profile = profile or BoardProfile()
        self.poll_seconds = poll_seconds
        self.backoff = backoff or Backoff()
        self.counters: Counter[str] = Counter()  # polls, faults, exceptions, recoveries
        self._state: list[bool] = [False] * inputs  # as last reported; inputs start inactive
        self._task: asyncio.Task[None] | None = None
        self._protocol_fault = False
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"modbus-{self.id}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # Cancel, and cancel again if it is lost: on Python 3.11 asyncio.wait_for (inside pymodbus) can
            # swallow a cancellation that arrives just as the reply does. The flag ends the loop either way.
            task.cancel()
            while not task.done():
                await asyncio.wait({task}, timeout=0.1)
                task.cancel()
        await self._release_all()
        self.bus.release()
        self.online = False

    async def set_output(self, output: int, energised: bool, pulse_seconds: float | None = None) -> None:
        if not 1 <= output <= self.outputs:
            raise DriverError(self.id, DriverErrorReason.BAD_ARGUMENT, f"no output {output}")
        p = self.profile
        pulse_at = p.pulse_at(output)
        try:
            if energised and pulse_seconds is not None and p.pulse is not None and pulse_at is not None:
                if p.pulse.kind is PulseKind.COIL_VALUE:
                    await self.bus.write_coil_value(self.device_id, pulse_at, p.pulse.units(pulse_seconds))
                else:
                    await self.bus.write_register(self.device_id, pulse_at, p.pulse.units(pulse_seconds))
            elif p.output_table is Table.COILS:
                await self.bus.write_bit(self.device_id, p.output_at(output), energised)
            else:
                value = p.output_on_value if energised else 0
                await self.bus.write_register(self.device_id, p.output_at(output), value)
        except DriverError as err:
            self.counters["write_faults"] += 1
            raise DriverError(self.id, err.reason, err.detail) from err

    # --- polling ---------------------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Read the inputs once and report the changes."""
        if self.inputs == 0:  # nothing to read: ask for output 1 so a dead board is still noticed
            await self.bus.read(self.device_id, self.profile.output_table, self.profile.output_address, 1)
            return
        values = await self.bus.read(
            self.device_id, self.profile.input_table, self.profile.input_address, self.inputs
        )
        self.counters["polls"] += 1
        for number, (old, new) in enumerate(zip(self._state, values, strict=True), start=1):
            if old != new:
                self._state[number - 1] = new
                self._on_input(InputChange(self.id, number, new))

    async def _run(self) -> None:
        delay = self.backoff.initial
        while not self._stopping:
            try:
                await self.poll()
            except DriverError as err:
                if err.reason is DriverErrorReason.PROTOCOL:
                    self._exception(err)
                else:
                    self._offline(err)
                    await asyncio.sleep(delay)
                    delay = self.backoff.next(delay)
                    continue
            else:
                self._protocol_fault = False
            if not self.online:
                self._recovered()
            delay = self.backoff.initial
            await asyncio.sleep(self.poll_seconds)

    def _offline(self, err: DriverError) -> None:
        self.counters["faults"] += 1
        if self.online or self.counters["faults"] == 1:
            log.error("controller %s not answering on %s: %s", self.id, self.bus.name, err)
            self.online = False
            self._on_online(self.id, False, f"{err.reason.value}: {err.detail}")
        else:
            log.debug("controller %s still not answering: %s", self.id, err)

    def _exception(self, err: DriverError) -> None:
        self.counters["exceptions"] += 1
        if not self._protocol_fault:
            log.error("controller %s answers with an error: %s", self.id, err)
            self._protocol_fault = True
        else:
            log.debug("controller %s: %s", self.id, err)

    def _recovered(self) -> None:
        if self.counters["faults"]:
            self.counters["recoveries"] += 1
            log.info("controller %s answering again on %s", self.id, self.bus.name)
        self.online = True
        self._on_online(self.id, True, "answering")

    async def _release_all(self) -> None:
        """De-energise every output, best effort: the gateway is going away."""
        p = self.profile
        try:
            if p.output_table is Table.COILS:
                await self.bus.write_bits(self.device_id, p.output_address, [False] * self.outputs)
            else:
                for output in range(1, self.outputs + 1):
                    await self.bus.write_register(self.device_id, p.output_at(output), 0)
        except DriverError as err:
            log.warning("controller %s: outputs not released on stop: %s", self.id, err)
