"""`menwei firmware ...`: update a board over its serial line, show its status, sign a release.

    menwei firmware update --port /dev/ttyAMA0 RELEASE     send, verify on the board, wait for it to confirm
    menwei firmware status --port /dev/ttyAMA0             version, slot, uptime, last reset cause
    menwei firmware sign --key KEY.pem --version V IMAGE -o RELEASE
    menwei firmware demo                                   the link and updates on the simulated board

Update and status open the port themselves: stop the gateway first (the port is opened exclusively). Sign runs
on the release workstation, where the operator's Ed25519 key lives; a gateway never holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from firmware_bridge.errors import BridgeError

EXIT_FIRMWARE = 4
_CAUSES = {0: "power-on", 1: "watchdog", 2: "command", 3: "update", 4: "rollback"}


def add_parser(sub: Any) -> None:
    """Register `firmware` on the menwei command's subparsers."""
    fw = sub.add_parser("firmware", help="door-controller board firmware (firmware-bridge)")
    fw_sub = fw.add_subparsers(dest="firmware_command", required=True)
    for name, text in (
        ("update", "install a signed release on a board"),
        ("status", "show a board's status"),
    ):
        cmd = fw_sub.add_parser(name, help=text)
        cmd.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyAMA0")
        cmd.add_argument("--baudrate", type=int, default=115200)
        cmd.add_argument(
            "--timeout", type=float, default=30.0, help="seconds to wait for the board to answer"
        )
        if name == "update":
            cmd.add_argument("release", type=Path, help="release file (menwei firmware sign)")
            cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    sign = fw_sub.add_parser("sign", help="sign a firmware image with the release key")
    sign.add_argument("image", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="Ed25519 private key, PEM (PKCS#8)")
    sign.add_argument("--version", dest="fw_version", required=True, help="firmware version, e.g. 1.4.0")
    sign.add_argument("-o", "--output", type=Path, required=True)
    demo = fw_sub.add_parser("demo", help="the link and updates on the simulated board, narrated")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")


def firmware_main(args: argparse.Namespace) -> int:
    try:
        if args.firmware_command == "sign":
            return _sign(args.image, args.key, args.fw_version, args.output)
        if args.firmware_command == "demo":
            from firmware_bridge.demo import run_demo

            return asyncio.run(run_demo(not args.no_progress))
        if args.firmware_command == "status":
            return asyncio.run(_status(args.port, args.baudrate, args.timeout))
        release_file = args.release.read_bytes()
        return asyncio.run(
            _update(args.port, args.baudrate, release_file, args.timeout, not args.no_progress)
        )
    except (BridgeError, OSError, ValueError) as err:
        print(f"menwei firmware: {err}", file=sys.stderr)
        return EXIT_FIRMWARE


def _sign(image: Path, key_path: Path, version: str, output: Path) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from firmware_bridge.release import pack_release, sign_release

    key = load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_path} is not an Ed25519 private key")
    release = sign_release(key, image.read_bytes(), version)
    output.write_bytes(pack_release(release))
    print(f"{output}: firmware {version}, {len(release.image)} bytes, sha256 {release.sha256.hex()}")
    return 0


async def _status(port: str, baudrate: int, wait_s: float) -> int:
    from firmware_bridge import protocol as p
    from firmware_bridge.link import Link

    link = Link(port, baudrate=baudrate)
    await link.start()
    try:
        if not await link.wait_up(wait_s):
            print(f"menwei firmware: no heartbeat from a board on {port}", file=sys.stderr)
            return EXIT_FIRMWARE
        _, uptime, cause, slot, confirmed, outputs, inputs, version = p.unpack_status(
            await link.request(p.Op.STATUS)
        )
    finally:
        await link.stop()
    trial = "" if confirmed else " (on trial, not confirmed yet)"
    print(
        f"{port}: firmware {version} in slot {'AB'[slot]}{trial}, up {uptime / 1000:.1f} s, "
        f"last reset: {_CAUSES.get(cause, str(cause))}, {outputs} outputs, {inputs} inputs"
    )
    return 0


async def _update(port: str, baudrate: int, release_file: bytes, wait_s: float, show_progress: bool) -> int:
    from firmware_bridge.link import Link
    from firmware_bridge.release import parse_release
    from firmware_bridge.update import update_firmware
    from tqdm import tqdm

    release = parse_release(release_file)
    link = Link(port, baudrate=baudrate)
    bar = tqdm(
        total=len(release.image),
        unit="B",
        unit_scale=True,
        desc=f"firmware {release.version}",
        disable=not show_progress,
    )

    def progress(held: int, total: int) -> None:
        bar.update(held - bar.n)

    await link.start()
    try:
        result = await update_firmware(
            link, release, progress=progress, resume_within_s=wait_s, confirm_within_s=wait_s
        )
    finally:
        bar.close()
        await link.stop()
    resumed = f", resumed {result.resumes}x" if result.resumes else ""
    print(
        f"{port}: firmware {result.version} running from slot {'AB'[result.slot]} and confirmed "
        f"({result.seconds:.1f} s{resumed})"
    )
    return 0
