"""A simulated Modbus relay board: pymodbus's own server with a board's tables, for tests, the demo and
installers (run it, point a `modbus-tcp` controller at it, and watch the relays click in the log).

    python -m drivers.sim.modbus_board --tcp 127.0.0.1:5020 --outputs 4 --inputs 8
    python -m drivers.sim.modbus_board --serial /dev/pts/5

It answers like a real board because it is pymodbus's real server: relays are coils (or holding registers),
inputs are discrete inputs (or input registers), and a pulse command of N at `pulse_address + k` (FC06, or
FC05 with N as its value as on Waveshare boards) energises output k+1 for N x 100 ms. Faults are injected at
the byte and PDU level: `fail_with` makes the board answer with a Modbus exception, `garble` corrupts its
next replies, and stopping the server is a dead board.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.profile import BoardProfile, PulseKind, Table

log = logging.getLogger(__name__)

_READ_FC = {Table.COILS: 1, Table.DISCRETE_INPUTS: 2, Table.HOLDING_REGISTERS: 3, Table.INPUT_REGISTERS: 4}
_WRITE_FC = {Table.COILS: 5, Table.DISCRETE_INPUTS: 2, Table.HOLDING_REGISTERS: 6, Table.INPUT_REGISTERS: 4}
_TABLE_SIZE = 0x400  # registers per table: room for a pulse command at 0x0200..


@dataclass(frozen=True, slots=True)
class OutputWrite:
    output: int
    energised: bool
    mono: float  # time.monotonic() when the server applied it


class SimulatedModbusBoard:
    def __init__(
        self,
        *,
        outputs: int = 4,
        inputs: int = 8,
        profile: BoardProfile | None = None,
        device_id: int = 1,
    ) -> None:
        self.outputs = outputs
        self.inputs = inputs
        self.profile = profile or BoardProfile()
        self.device_id = device_id
        self.writes: list[OutputWrite] = []
        self.pulses: list[tuple[int, int]] = []  # (output, units) of each timed-pulse command received
        self.fail_with: ExcCodes | None = None  # answer every request with this exception
        self.garble = 0  # corrupt this many of the next replies
        self.requests = 0
        self.port = 0  # the TCP port, once serving
        self._pdu_offset = 7  # where the function code sits in a received frame: after the MBAP header (TCP)
        self._coil_values: dict[int, int] = {}  # raw FC05 values seen on the wire, by address
        self.on_write: Callable[[OutputWrite], None] | None = None  # e.g. a benchmark's stopwatch
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _device(self) -> SimDevice:
        bits = [SimData(0, count=_TABLE_SIZE, values=False, datatype=DataType.BITS)]
        regs = [SimData(0, count=_TABLE_SIZE, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(
            id=self.device_id,
            simdata=(list(bits), list(bits), list(regs), list(regs)),
            action=self._action,
        )

    # --- running ---------------------------------------------------------------------------------------------

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the port (pass 0 for a free one)."""
        server = ModbusTcpServer(
            self._device(), address=(host, port), trace_packet=self._trace, ignore_missing_devices=True
        )
        await self._serve(server)
        sockets = getattr(server.transport, "sockets", None) or ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def serve_serial(self, port: str, baudrate: int = 9600) -> None:
        self._pdu_offset = 1  # after the RTU device address
        server = ModbusSerialServer(
            self._device(),
            port=port,
            baudrate=baudrate,
            trace_packet=self._trace,
            ignore_missing_devices=True,
        )
        await self._serve(server)

    async def _serve(self, server: ModbusTcpServer | ModbusSerialServer) -> None:
        await server.serve_forever(background=True)  # returns once listening
        self._server = server

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    # --- the physical world ----------------------------------------------------------------------------------

    async def set_input(self, number: int, active: bool) -> None:
        p = self.profile
        value: list[bool] | list[int] = [active] if p.input_table.is_bits else [int(active)]
        await self._set(_WRITE_FC[p.input_table], p.input_address + number - 1, value)

    async def output(self, number: int) -> bool:
        p = self.profile
        values = await self._context().async_getValues(
            self.device_id, _READ_FC[p.output_table], p.output_at(number), 1
        )
        assert isinstance(values, list)
        return bool(values[0])

    # --- internals -------------------------------------------------------------------------------------------

    def _context(self) -> Any:
        if self._server is None:
            raise RuntimeError("board not running")
        return self._server.context

    async def _set(self, fc: int, address: int, values: list[bool] | list[int]) -> None:
        result = await self._context().async_setValues(self.device_id, fc, address, values)
        if result is not None:
            raise ValueError(f"cannot set address {address}: {result}")

    def _trace(self, sending: bool, data: bytes) -> bytes:
        at = self._pdu_offset
        if not sending and len(data) >= at + 5 and data[at] == 5:
            # FC05 decodes to on/off; a board's "flash on" command carries its time in the raw value.
            address, value = struct.unpack(">HH", data[at + 1 : at + 5])
            self._coil_values[address] = value
        if sending and self.garble > 0 and data:
            self.garble -= 1
            return bytes(b ^ 0x5A for b in data)
        return data

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if self.fail_with is not None:
            return self.fail_with
        if set_values is None:  # a read (or FC05's read-back)
            return None
        p = self.profile
        now = time.monotonic()
        pulse_at = p.pulse_at(1)
        pulse_fc = 5 if p.pulse is not None and p.pulse.kind is PulseKind.COIL_VALUE else 6
        if function_code == pulse_fc and p.pulse is not None and pulse_at is not None:
            output = address - pulse_at + 1
            if 1 <= output <= self.outputs:
                units = int(set_values[0]) if pulse_fc == 6 else self._coil_values.pop(address, 0)
                self.pulses.append((output, units))
                self._spawn(self._pulse(output, units * p.pulse.unit_seconds))
                return None
        if function_code in (5, 15, 6, 16):
            table = Table.COILS if function_code in (5, 15) else Table.HOLDING_REGISTERS
            if table is p.output_table:
                for i, value in enumerate(set_values):
                    output = address + i - p.output_address + 1
                    if 1 <= output <= self.outputs:
                        self._record(output, bool(value), now)
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _record(self, output: int, energised: bool, mono: float) -> None:
        write = OutputWrite(output, energised, mono)
        self.writes.append(write)
        if self.on_write is not None:
            self.on_write(write)
        del self.writes[:-10_000]
        log.info("output %d %s", output, "energised" if energised else "released")

    async def _pulse(self, output: int, seconds: float) -> None:
        p = self.profile
        on: list[bool] | list[int] = [True] if p.output_table is Table.COILS else [p.output_on_value]
        off: list[bool] | list[int] = [False] if p.output_table is Table.COILS else [0]
        fc = _WRITE_FC[p.output_table]
        await self._set(fc, p.output_at(output), on)
        loop = asyncio.get_running_loop()

        def end() -> None:
            self._timers.discard(timer)
            if self._server is not None:
                self._spawn(self._set(fc, p.output_at(output), off))

        timer = loop.call_later(seconds, end)
        self._timers.add(timer)


async def _main(args: argparse.Namespace) -> None:
    board = SimulatedModbusBoard(outputs=args.outputs, inputs=args.inputs, device_id=args.device_id)
    if args.serial:
        await board.serve_serial(args.serial, args.baudrate)
        print(f"simulated board {args.device_id} on {args.serial}", flush=True)
    else:
        host, _, port = args.tcp.rpartition(":")
        bound = await board.serve_tcp(host or "127.0.0.1", int(port))
        print(f"simulated board {args.device_id} on {host}:{bound}", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    await board.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT")
    where.add_argument("--serial", metavar="PORT")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--outputs", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
