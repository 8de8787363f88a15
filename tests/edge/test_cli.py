"""The `menwei` command: version, validate-config, audit verify, and the demo as CI runs it."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.reader import CredentialRead
from edge.cli import EXIT_AUDIT, EXIT_CONFIG, main
from edge.config import load_config
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.toml"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("menwei 0.")


def test_validate_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", str(DEMO)]) == 0
    assert "ok (site lotus-garden" in capsys.readouterr().out


def test_validate_config_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO.read_text().replace("unlock_seconds = 5", "unlock_secnds = 5", 1))
    assert main(["validate-config", str(bad)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert str(bad) in err and "doors[0].unlock_secnds" in err


def _make_log(data_dir: Path, reads: int) -> Path:
    cfg = load_config(DEMO)
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": data_dir})})

    async def go() -> Path:
        gw = Gateway(cfg, build_devices(cfg))
        await gw.start()
        for i in range(reads):
            gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, str(50000 + i)))
        await gw.stop()
        return gw.db_path

    return asyncio.run(go())


def test_audit_verify_ok_then_names_the_tampered_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _make_log(tmp_path, 5)
    assert main(["audit", "verify", "--db", str(db)]) == 0
    assert "5 events verified" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        # Rewrite history: the third denial becomes a grant.
        (seq,) = conn.execute("SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET 2").fetchone()
        conn.execute(
            "UPDATE events SET payload = replace(payload, '\"granted\":false', '\"granted\":true') "
            "WHERE seq = ?",
            (seq,),
        )
    assert main(["audit", "verify", "--db", str(db)]) == EXIT_AUDIT
    assert f"BROKEN at event seq {seq}" in capsys.readouterr().out


def test_audit_verify_missing_db(tmp_path: Path) -> None:
    assert main(["audit", "verify", "--db", str(tmp_path / "none.db")]) == EXIT_AUDIT


def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    """What CI and the README run: the real gateway through the scripted day, with its own Mosquitto and the
    cloud kit on the other end, stopped by --for."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "demo",
            "--for",
            "24",
            "--pace",
            "0.3",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        "GRANTED Main gate",
        "unknown_credential",
        "anti_passback",
        "pass_used_up",
        "door_held",
        "granted_responder",
        "cloud   snapshot v1 applied by the gateway",
        "cloud   <- gw-demo #",  # the cloud consumed uploaded events
        "the gateway replied to the command: ok=True",
        "credential_revoked",  # the revocation delta reached the gateway
        "trust list v1 with pass-issuing key",
        "QR version 9",  # the cloud issued a signed pass...
        "DENIED  Pedestrian side door [side-door-in] pass V-",  # ...granted once, then refused as used up
        "hash chain verified",
    ):
        assert expected in out, f"{expected!r} missing from demo output:\n{out}"
    assert main(["audit", "verify", "--db", str(tmp_path / "menwei.db")]) == 0


def test_run_serves_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    import os
    import signal
    import time

    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path)}  # as systemd's StateDirectory= would set it
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(DEMO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "menwei.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "gateway gw-demo started with 3 doors" in err
    assert "gateway stopped" in err


def test_run_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO.read_text().replace('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"'))
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == EXIT_CONFIG
    assert "site.timezone" in proc.stderr and str(bad) in proc.stderr
