"""Install mode: give an OSDP reader in install mode its own key.

A new (or factory-reset) reader only speaks the well-known default key SCBK-D. Run this once, at the reader, in
a controlled setting: it generates a 16-byte key with `secrets` (never libosdp's KeyStore.gen_key, which uses
`random`), opens a secure channel with SCBK-D and sends the key (KEYSET); libosdp then restarts the channel on
the new key to prove it. The key is written to a credential file (hex, mode 0600) for the gateway to read.

    python -m drivers.osdp.install --port /dev/ttyUSB2 --address 0 --out /etc/credstore/osdp-gate-in
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.osdp.reader import KEY_LENGTH


def new_key() -> bytes:
    return secrets.token_bytes(KEY_LENGTH)


def install_key(channel: Callable[[], Any], address: int, key: bytes, *, timeout: float = 10.0) -> bool:
    """Set `key` on the reader at `address`; True once a secure channel runs on it. Blocking."""
    from osdp import ControlPanel, LibFlag, LogLevel, PDInfo

    if len(key) != KEY_LENGTH:
        raise ValueError("an OSDP key (SCBK) is 16 bytes")
    cp = ControlPanel(
        [PDInfo(address, channel(), scbk=key, flags=[LibFlag.InstallMode])], log_level=LogLevel.Error
    )
    cp.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cp.is_online(address) and cp.is_sc_active(address):
                return True
            time.sleep(0.05)
        return False
    finally:
        cp.stop()


def write_credential(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex() + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", required=True, help="serial port (or pyserial URL) of the reader")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--address", type=int, required=True, help="the reader's OSDP address (0-126)")
    parser.add_argument("--out", type=Path, required=True, help="credential file to create for the new key")
    args = parser.parse_args()
    from drivers.osdp.channel import SerialChannel

    key = new_key()
    if not install_key(lambda: SerialChannel(args.port, args.baudrate), args.address, key):
        print(
            "the reader did not take the key: is it in install mode (no key, or factory reset)?",
            file=sys.stderr,
        )
        return 1
    write_credential(args.out, key)
    print(f"key set on reader {args.address}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
