"""A one-time pass granted, then the gateway SIGKILLed (a real child process, no clean stop): after a restart
the pass is refused as used up. The use reaches the database by itself, within moments of the grant; this
test waits for that row to appear (bounded), kills at once, and checks what the restarted gateway decides."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.clock import ManualClock
from edge.passes.issue import PassSigner

from .conftest import SITE, MakeClaims
from .test_pass_use_rows import scan, started

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def use_rows(db_path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db_path) as conn:
        return list(conn.execute("SELECT pass_id, count FROM pass_use_counts"))


def grant_then_kill(data_dir: Path, token: str) -> None:
    """Run the child, see it grant, wait for the use row, SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "pass_use_kill_child.py"), str(data_dir), token],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "granted"
        deadline = time.monotonic() + 30  # a bound on waiting, not a timing assertion
        while not use_rows(data_dir / "menwei.db") and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert child.poll() is None
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_one_time_pass_stays_used_after_a_sigkill(tmp_path: Path, make_claims: MakeClaims) -> None:
    cloud = PassSigner.generate()
    now = datetime.now(UTC).replace(microsecond=0)
    token = cloud.issue(
        make_claims(
            site=SITE,
            not_before=now - timedelta(hours=1),
            expires=now + timedelta(hours=3),
            issued_at=now - timedelta(hours=2),
            max_uses=1,
        )
    )
    gw = await started(tmp_path, ManualClock(now), cloud)  # stores the trust list for the child
    await gw.stop()

    await asyncio.to_thread(grant_then_kill, tmp_path, token)

    assert use_rows(tmp_path / "menwei.db") == [("V-7K2M9QXD4R", 1)]
    gw2 = await started(tmp_path, ManualClock(datetime.now(UTC)), cloud)
    try:
        assert scan(gw2, token) == "pass_used_up"
    finally:
        await gw2.stop()
