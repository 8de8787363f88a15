"""One Modbus line: a pymodbus async client behind one asyncio.Lock, with a gap between frames.

RS-485 is half duplex and boards on one line share it, so every request on a line is serialised through the
same ModbusBus (several boards on one serial port share one instance); some boards also need a few
milliseconds of silence after a reply before the next frame. Every failure leaves here as a DriverError:
OFFLINE (no connection), TIMEOUT (no or garbled answer) or PROTOCOL (the board answered with a Modbus
exception). A transport fault drops the connection, so the next call starts from a clean socket or port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.errors import DriverError, DriverErrorReason
from drivers.modbus.profile import Table

if TYPE_CHECKING:
    from pymodbus.client.base import ModbusBaseClient
    from pymodbus.pdu import ModbusPDU

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TcpLine:
    host: str
    port: int = 502


@dataclass(frozen=True, slots=True)
class SerialLine:
    port: str  # a device (/dev/ttyUSB0) or any pyserial URL
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1


Line = TcpLine | SerialLine


class ModbusBus:
    def __init__(self, line: Line, *, timeout: float = 0.5, frame_gap: float | None = None) -> None:
        self.line = line
        self.timeout = timeout
        # RS-485 boards want a little silence between frames; TCP (and its framing) does not.
        self.frame_gap = frame_gap if frame_gap is not None else (0.0 if isinstance(line, TcpLine) else 0.005)
        self.lock = asyncio.Lock()
        self._client: ModbusBaseClient | None = None
        self._last_frame = 0.0
        self.users = 0  # controllers on this line; the last to stop closes it

    def release(self) -> None:
        self.users = max(0, self.users - 1)
        if self.users == 0:
            self.close()

    @property
    def name(self) -> str:
        line = self.line
        return f"{line.host}:{line.port}" if isinstance(line, TcpLine) else line.port

    def _new_client(self) -> ModbusBaseClient:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        # retries=0 and reconnect_delay=0: the controller owns retrying and backoff, so the timing of a
        # fault is ours and pymodbus does not reconnect behind our back.
        if isinstance(self.line, TcpLine):
            return AsyncModbusTcpClient(
                self.line.host, port=self.line.port, timeout=self.timeout, retries=0, reconnect_delay=0
            )
        return AsyncModbusSerialClient(
            self.line.port,
            baudrate=self.line.baudrate,
            parity=self.line.parity,
            stopbits=self.line.stopbits,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
        )

    async def _connected(self) -> ModbusBaseClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        client = self._new_client()
        try:
            ok = await client.connect()
        except OSError as err:  # a serial device that vanished raises rather than returning False
            client.close()
            raise DriverError(self.name, DriverErrorReason.OFFLINE, str(err)) from err
        if not ok:
            client.close()
            raise DriverError(self.name, DriverErrorReason.OFFLINE, "cannot connect")
        self._client = client
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def call(self, request: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """Send one request under the line's lock and return the board's (non-exception) answer."""
        from pymodbus.exceptions import ModbusException

        async with self.lock:
            client = await self._connected()
            wait = self._last_frame + self.frame_gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                reply = await request(client)
            except (ModbusException, OSError, TimeoutError) as err:
                self.close()
                raise DriverError(
                    self.name, DriverErrorReason.TIMEOUT, str(err) or type(err).__name__
                ) from err
            finally:
                self._last_frame = time.monotonic()
        if reply.isError():
            code = getattr(reply, "exception_code", "?")
            raise DriverError(self.name, DriverErrorReason.PROTOCOL, f"Modbus exception {code}")
        return reply

    # --- the few requests a door controller needs -----------------------------------------------------------

    async def read(self, device_id: int, table: Table, address: int, count: int) -> list[bool]:
        """Read `count` points and return them as active or not (a register is active when non-zero)."""

        async def request(client: ModbusBaseClient) -> ModbusPDU:
            match table:
                case Table.COILS:
                    return await client.read_coils(address, count=count, device_id=device_id)
                case Table.DISCRETE_INPUTS:
                    return await client.read_discrete_inputs(address, count=count, device_id=device_id)
                case Table.HOLDING_REGISTERS:
                    return await client.read_holding_registers(address, count=count, device_id=device_id)
                case Table.INPUT_REGISTERS:
                    return await client.read_input_registers(address, count=count, device_id=device_id)

        reply = await self.call(request)
        values = list(reply.bits) if table.is_bits else [r != 0 for r in reply.registers]
        if len(values) < count:
            raise DriverError(self.name, DriverErrorReason.PROTOCOL, f"{len(values)} values, asked {count}")
        return values[:count]

    async def write_bit(self, device_id: int, address: int, value: bool) -> None:
        await self.call(lambda client: client.write_coil(address, value, device_id=device_id))

    async def write_bits(self, device_id: int, address: int, values: list[bool]) -> None:
        await self.call(lambda client: client.write_coils(address, values, device_id=device_id))

    async def write_register(self, device_id: int, address: int, value: int) -> None:
        await self.call(lambda client: client.write_register(address, value, device_id=device_id))

    async def write_coil_value(self, device_id: int, address: int, value: int) -> None:
        """FC05 with a raw 16-bit value instead of ON/OFF: some boards' timed-pulse command (Waveshare's
        "flash on" takes the time in 100 ms units this way)."""
        request = _raw_coil_write(address, value, device_id)
        await self.call(lambda client: client.execute(False, request))


def _raw_coil_write(address: int, value: int, device_id: int) -> ModbusPDU:
    import struct

    from pymodbus.pdu.bit_message import WriteSingleCoilRequest

    class RawCoilWrite(WriteSingleCoilRequest):
        def encode(self) -> bytes:
            return struct.pack(">HH", self.address, value)

    return RawCoilWrite(address=address, bits=[True], dev_id=device_id)
