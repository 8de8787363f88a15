"""A gateway in a child process for the SIGKILL test (test_pass_use_kill.py).

    python pass_use_kill_child.py DATA_DIR TOKEN

Starts the gateway on DATA_DIR (the parent stored the trust list there), presents TOKEN once at the main gate,
prints the decision's reason and then waits to be killed: it never stops the gateway, so whatever survives
the kill was written while it ran, not at a clean stop.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from drivers.reader import CredentialRead
from edge.config import load_config
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind

ROOT = Path(__file__).resolve().parents[3]


async def main(data_dir: Path, token: str) -> None:
    cfg = load_config(ROOT / "config" / "demo.toml")
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})})
    gateway = Gateway(cfg, build_devices(cfg))
    gateway.passes.ntp_probe = lambda: True  # the host clock is right: take it as NTP-synchronised
    await gateway.start()
    decision = gateway.present(CredentialRead("main-gate-in", CredentialKind.PASS, token))
    print(decision.reason.value, flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
