"""Card read -> relay coil written, through the whole gateway, against pymodbus's own server (the relay board)
and libosdp's own PeripheralDevice (the card reader).

Prints p50/p99 of
  0. baseline: a bare Modbus write_coil round trip on the same TCP server (ModbusBus, same lock and gap);
  1. in-process card read (SimulatedReader.present) -> decision -> bus -> door runner -> ModbusDoorController ->
     the board's server applies the coil write;
  2. OSDP: the card presented at libosdp's PeripheralDevice -> Secure Channel over a pty pair -> ControlPanel ->
     OsdpReader -> ... -> coil written; and the gateway's part of it (event on the loop -> coil written).
After each grant the door is opened and closed (its contact), so the lock is driven back and every read
drives the coil again. The board is polled every 50 ms, as a gateway would.

The OSDP end-to-end figure includes libosdp's polling cadence (its ControlPanel and PeripheralDevice threads
each sleep 20 ms between refreshes, and the CP polls the PD), the protocol's equivalent of line time; the
gateway's own share is figure 2b. Target: p99 <= 20 ms excluding the serial line time.

    .venv/bin/python bench/bench_hardware.py [--reads 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tomllib
import tty
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.modbus.bus import ModbusBus, TcpLine
from drivers.modbus.profile import BoardProfile, PulseCommand
from drivers.osdp.channel import FdChannel
from drivers.osdp.install import new_key
from drivers.osdp.reader import OsdpReader
from drivers.sim.modbus_board import OutputWrite, SimulatedModbusBoard
from drivers.sim.osdp_reader import SimulatedOsdpReader
from drivers.sim.reader import SimulatedReader
from edge.config import GatewayConfig
from edge.demo_data import ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.secrets import env_var_name

ROOT = Path(__file__).resolve().parent.parent


def pct(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (n={len(ms)})"


def config(data_dir: Path, modbus_port: int, osdp_port: str) -> GatewayConfig:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    data["gateway"]["data_dir"] = str(data_dir)
    data["logging"]["level"] = "warning"
    data["controllers"] = [
        {
            "type": "modbus-tcp",
            "id": "board-1",
            "host": "127.0.0.1",
            "port": modbus_port,
            "outputs": 4,
            "inputs": 12,
            "poll_seconds": 0.05,
            "profile": {"pulse_address": 0x0200},
        }
    ]
    for door in data["doors"]:
        door["controller"] = "board-1"
    data["anti_passback"] = []  # the same card goes in again and again
    for reader in data["readers"]:
        reader.pop("area", None)
    data["readers"].append(
        {"type": "osdp", "id": "main-gate-osdp", "door": "main-gate", "port": osdp_port, "address": 1}
        | {"key_credential": "bench-osdp"}
    )
    return GatewayConfig.model_validate(data)


class Stopwatch:
    """Waits for the board to apply a write to output 1 and says when it did (server-side monotonic time)."""

    def __init__(self, board: SimulatedModbusBoard) -> None:
        self._waiting: asyncio.Future[float] | None = None
        self._want = True
        board.on_write = self._seen

    def _seen(self, write: OutputWrite) -> None:
        if write.output == 1 and write.energised == self._want and self._waiting and not self._waiting.done():
            self._waiting.set_result(write.mono)

    async def wait(self, energised: bool, trigger: Callable[[], None]) -> float:
        self._want = energised
        self._waiting = asyncio.get_running_loop().create_future()
        trigger()
        return await asyncio.wait_for(self._waiting, 5.0)


async def run(reads: int) -> None:
    board = SimulatedModbusBoard(outputs=4, inputs=12, profile=BoardProfile(pulse=PulseCommand(0x0200)))
    port = await board.serve_tcp()

    # 0. baseline: the bare round trip
    bus = ModbusBus(TcpLine("127.0.0.1", port))
    base: list[float] = []
    for i in range(reads):
        t0 = time.monotonic()
        await bus.write_bit(1, 3, bool(i % 2))
        base.append(time.monotonic() - t0)
    bus.close()

    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    key = new_key()
    os.environ[env_var_name("bench-osdp")] = key.hex()
    pd = SimulatedOsdpReader(lambda: FdChannel(master), address=1, key=key)
    pd.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp), port, os.ttyname(slave))
        gw = Gateway(cfg, build_devices(cfg))
        await gw.start()
        try:
            await gw.replace_access_list(
                demo_access_list(1, datetime.now(UTC), "side-door", list(gw.site.doors))
            )
            runner = gw.runners["main-gate"]
            osdp = gw.devices.readers["main-gate-osdp"]
            sim = gw.devices.readers["main-gate-in"]
            assert isinstance(osdp, OsdpReader)
            assert isinstance(sim, SimulatedReader)
            async with asyncio.timeout(10):
                while True:
                    if osdp.online:
                        break
                    await asyncio.sleep(0.05)
            watch = Stopwatch(board)

            def walk_through() -> None:  # the resident walks through: the contact opens and closes
                runner.contact(True)
                runner.contact(False)

            async def relock() -> None:
                await watch.wait(False, walk_through)

            in_process: list[float] = []
            for _ in range(reads):
                t0 = time.monotonic()
                done = await watch.wait(True, lambda: sim.present(CredentialKind.CARD, ZHANG_CARD))
                in_process.append(done - t0)
                await relock()

            arrived: list[float] = []
            handle = osdp.handle_event

            def stamped(event: dict[str, Any]) -> None:
                arrived.append(time.monotonic())
                handle(event)

            osdp.handle_event = stamped  # type: ignore[method-assign]
            end_to_end: list[float] = []
            gateway_part: list[float] = []
            for _ in range(reads):
                arrived.clear()
                t0 = time.monotonic()
                done = await watch.wait(True, lambda: pd.present_card(int(ZHANG_CARD)))
                end_to_end.append(done - t0)
                gateway_part.append(done - arrived[0])
                await relock()
        finally:
            await gw.stop()
            await asyncio.to_thread(pd.stop)
            await board.stop()
            os.close(master)
            os.close(slave)

    print(f"0.  bare Modbus write_coil round trip (TCP, same server)     {pct(base)}")
    print(f"1.  card read (in-process reader) -> coil written            {pct(in_process)}")
    print(f"2a. card at OSDP reader -> coil written (incl. libosdp poll) {pct(end_to_end)}")
    print(f"2b. OSDP card event on the loop -> coil written              {pct(gateway_part)}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.reads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
