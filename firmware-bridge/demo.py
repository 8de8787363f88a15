"""`menwei firmware demo`: the link and the update path on the simulated board, narrated.

A board simulator behind the fault relay on pseudo-terminals (paced like a 115200-baud line), driven by the
real FirmwareBridgeController and updater: an unlock whose acks are lost (the relay still fires once), garbled
frames, the cable pulled and put back, an update interrupted and resumed, a foreign signature refused, and an
image that never confirms rolled back. Nothing here touches real hardware.
"""

from __future__ import annotations

import asyncio
import logging
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from firmware_bridge import protocol as p
from firmware_bridge.controller import FirmwareBridgeController
from firmware_bridge.errors import UpdateError
from firmware_bridge.frame import FrameType
from firmware_bridge.protocol import Op
from firmware_bridge.release import sign_release
from firmware_bridge.testbench import FAST_DEVICE, FAST_LINK, Bench, eventually
from firmware_bridge.update import update_firmware

from drivers.door_controller import InputChange


def _say(text: str) -> None:
    print(f"  {text}", flush=True)


async def run_demo(show_progress: bool = True) -> int:
    from tqdm import tqdm

    logging.getLogger("firmware_bridge").setLevel(logging.ERROR)
    with Bench(baud=115200, config=FAST_DEVICE) as bench:
        ctl = FirmwareBridgeController("demo-board", bench.port, timing=FAST_LINK)
        changes: list[InputChange] = []
        ctl.bind(
            changes.append,
            lambda cid, online, detail: _say(f"board {'online' if online else 'OFFLINE'}: {detail}"),
        )
        await ctl.start()
        try:
            await eventually(lambda: ctl.online)
            status = p.unpack_status(await ctl.link.request(Op.STATUS))
            print(f"1. Board on {bench.port}: firmware {status[7]}, slot {'AB'[status[3]]}")

            print("2. Unlock for 3 s while the relay loses the next two acks")
            bench.relay.b_to_a.drop_types[FrameType.ACK] = 2
            await ctl.set_output(1, True, pulse_seconds=3.0)
            _say(
                f"resent {ctl.link.stats.resent}x with the same seq; relay energised {bench.board.energisations(1)}x"
            )

            print("3. Noise on the line: three garbled frames from the board")
            bench.relay.b_to_a.garble = 3
            for _ in range(5):
                await ctl.link.request(Op.STATUS)
            _say(f"frames dropped by the decoder: {ctl.link.stats.faults}; every command answered")

            print("4. Cable pulled; the door contact opens meanwhile; cable back")
            bench.relay.unplug()
            await eventually(lambda: not ctl.online)
            bench.board.set_input(1, True)
            bench.relay.replug()
            await eventually(lambda: ctl.online and bool(changes))
            _say(f"reported after re-plug: {changes[-1]}")

            print("5. Update to 1.1.0 (32 KiB), cable pulled at 40 %")
            release = sign_release(bench.release_key, os.urandom(32 * 1024), "1.1.0")
            bar = tqdm(
                total=len(release.image), unit="B", unit_scale=True, disable=not show_progress, leave=False
            )
            pulled: list[bool] = []

            def progress(held: int, total: int) -> None:
                bar.update(held - bar.n)
                if held > total * 0.4 and not pulled:
                    pulled.append(True)
                    bench.relay.unplug()
                    asyncio.get_running_loop().call_later(1.0, bench.relay.replug)

            result = await update_firmware(ctl.link, release, progress=progress)
            bar.close()
            _say(
                f"installed {result.version} in slot {'AB'[result.slot]} and confirmed, resumed {result.resumes}x, "
                f"{result.chunks_sent} chunks for {len(release.image) // p.CHUNK_SIZE}"
            )

            print("6. A release signed with someone else's key")
            try:
                await update_firmware(
                    ctl.link, sign_release(Ed25519PrivateKey.generate(), b"x" * 4000, "6.6.6")
                )
            except UpdateError as err:
                _say(f"refused: {err}")

            print("7. A release whose image never confirms itself after boot")
            bench.board.healthy = False
            try:
                await update_firmware(
                    ctl.link, sign_release(bench.release_key, os.urandom(8000), "1.2.0-bad")
                )
            except UpdateError as err:
                status = p.unpack_status(await ctl.link.request(Op.STATUS))
                _say(f"{err}; running {status[7]} from slot {'AB'[status[3]]}")
        finally:
            await ctl.stop()
    return 0
