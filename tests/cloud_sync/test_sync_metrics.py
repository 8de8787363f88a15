"""Sync lag on the metrics endpoint of a real `menwei run` connected to a real Mosquitto: the link's state, the
age of the last acknowledged upload and of the last access list applied from the cloud (pushed by the cloud
kit), scraped over HTTP; the link going down shows as disconnected, and `menwei status` reports it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cloud_sync.broker import LocalBroker
from cloud_sync.kit import CloudKit

from edge.demo_data import demo_access_list

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo.toml"

Samples = dict[str, float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> Samples:
    """Unlabelled samples by name (labelled ones are not needed here)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: Samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


def wait_for(port: int, predicate: Callable[[Samples], bool], proc: subprocess.Popen[str]) -> Samples:
    deadline = time.monotonic() + 30
    samples: Samples = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        if samples and predicate(samples):
            return samples
        time.sleep(0.1)
    raise AssertionError(f"metrics never matched; last scrape: {samples}")


def test_menwei_run_reports_sync_lag(tmp_path: Path, broker: LocalBroker) -> None:
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        DEMO.read_text().replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path / "data"}"')
        + f"\n[metrics]\nport = {port}\n"
        + f'\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nheartbeat_seconds = 1\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
        cwd=ROOT,
    )
    try:
        first = wait_for(port, lambda m: m.get("menwei_mqtt_connected") == 1.0, proc)
        assert "menwei_sync_last_downlink_age_seconds" not in first  # nothing applied yet
        assert "menwei_access_list_age_seconds" not in first  # and none in the log either

        with CloudKit(broker.host, broker.port, "backend-metrics", "lotus-garden") as kit:
            acl = demo_access_list(21, datetime.now(UTC), "side-door", ["main-gate", "side-door", "lobby-a"])
            kit.push_snapshot("gw-demo", acl)
        # The access_list event the snapshot left in the log goes up and is acknowledged too.
        m = wait_for(
            port,
            lambda m: (
                m.get("menwei_access_list_version") == 21
                and "menwei_sync_last_upload_age_seconds" in m
                and m.get("menwei_outbox_depth") == 0
            ),
            proc,
        )
        assert 0 <= m["menwei_sync_last_downlink_age_seconds"] < 60
        assert 0 <= m["menwei_access_list_age_seconds"] < 60
        assert 0 <= m["menwei_sync_last_upload_age_seconds"] < 60

        status = subprocess.run(
            [sys.executable, "-m", "edge.cli", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert "cloud        connected" in status.stdout, status.stdout
        assert status.returncode == 0, status.stdout

        broker.stop()
        wait_for(port, lambda m: m.get("menwei_mqtt_connected") == 0.0, proc)
        status = subprocess.run(
            [sys.executable, "-m", "edge.cli", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert status.returncode == 1 and "not connected" in status.stdout, status.stdout
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
