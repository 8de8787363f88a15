"""Prometheus metrics: decisions, latency, outbox, access-list version, device states and unacknowledged alarms,
scraped over HTTP
from an in-process gateway and from a real `menwei run`; the endpoint stays on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.reader import CredentialRead
from drivers.sim.door_controller import SimulatedDoorController
from edge.config import MetricsSection, load_config
from edge.decision import Decision, Reason
from edge.demo_data import UNKNOWN_CARD, ZHANG_CARD, demo_access_list
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind
from edge.ops.metrics import DecisionStats, MetricsServer

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo.toml"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Gateway, MetricsServer]]:
    cfg = load_config(DEMO)
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": tmp_path})})
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    await gw.replace_access_list(demo_access_list(7, datetime.now(UTC), "side-door", list(gw.site.doors)))
    server = MetricsServer(gw, "127.0.0.1", 0)
    server.start()
    yield gw, server
    await asyncio.to_thread(server.stop)
    await gw.stop()


async def test_decisions_latency_outbox_version(served: tuple[Gateway, MetricsServer]) -> None:
    gw, server = served
    gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, ZHANG_CARD))
    gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, UNKNOWN_CARD))
    gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, UNKNOWN_CARD))
    assert gw.events is not None
    await asyncio.to_thread(gw.events.flush)

    m = await asyncio.to_thread(scrape, server.port)
    granted = (("credential", "card"), ("reason", "granted"), ("result", "granted"))
    unknown = (("credential", "card"), ("reason", "unknown_credential"), ("result", "denied"))
    assert m[("menwei_decisions_total", granted)] == 1
    assert m[("menwei_decisions_total", unknown)] == 2
    assert m[("menwei_decision_latency_seconds_count", ())] == 3
    assert m[("menwei_decision_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert 0 < m[("menwei_decision_latency_seconds_sum", ())] < 1
    assert m[("menwei_access_list_version", ())] == 7
    # Offline gateway (no [mqtt]): every logged event waits in the outbox.
    assert m[("menwei_outbox_depth", ())] >= 3
    assert 0 <= m[("menwei_outbox_oldest_age_seconds", ())] < 60


async def test_device_online_follows_the_offline_alarms(served: tuple[Gateway, MetricsServer]) -> None:
    gw, server = served
    sim = gw.devices.controllers["sim-1"]
    assert isinstance(sim, SimulatedDoorController)
    m = await asyncio.to_thread(scrape, server.port)
    assert m[("menwei_device_online", (("device", "sim-1"),))] == 1
    assert m[("menwei_device_online", (("device", "main-gate-in"),))] == 1
    sim.go_offline()
    await asyncio.sleep(0.05)
    m = await asyncio.to_thread(scrape, server.port)
    assert m[("menwei_device_online", (("device", "sim-1"),))] == 0
    sim.come_back()
    await asyncio.sleep(0.05)
    m = await asyncio.to_thread(scrape, server.port)
    assert m[("menwei_device_online", (("device", "sim-1"),))] == 1


async def test_unacknowledged_alarms_are_counted(served: tuple[Gateway, MetricsServer]) -> None:
    gw, server = served
    assert (await asyncio.to_thread(scrape, server.port))[("menwei_alarms_unacknowledged", ())] == 0
    sim = gw.devices.controllers["sim-1"]
    assert isinstance(sim, SimulatedDoorController)
    door = gw.site.doors["side-door"]
    assert door.contact_input is not None
    sim.set_input(door.contact_input, True)  # forced
    sim.set_input(door.contact_input, False)  # closed again: cleared, still unacknowledged
    sim.go_offline()
    sim.come_back()
    assert gw.alarm_recorder is not None
    await gw.alarm_recorder.flush()
    assert (await asyncio.to_thread(scrape, server.port))[("menwei_alarms_unacknowledged", ())] == 2
    first, _ = await asyncio.to_thread(gw.alarms.open_alarms)
    await asyncio.to_thread(gw.alarms.acknowledge, first.id, "guard1", "", datetime.now(UTC))
    assert (await asyncio.to_thread(scrape, server.port))[("menwei_alarms_unacknowledged", ())] == 1


async def test_stop_detaches_from_the_gateway(served: tuple[Gateway, MetricsServer]) -> None:
    gw, server = served
    port = server.port
    await asyncio.to_thread(server.stop)
    assert gw.decision_observer is None
    gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, UNKNOWN_CARD))
    assert server.stats.counts == {}
    with pytest.raises(OSError):
        await asyncio.to_thread(scrape, port)


def test_observe_counts_and_buckets() -> None:
    stats = DecisionStats((0.001, 0.01))
    now = datetime.now(UTC)
    granted = Decision(Reason.GRANTED, "r1", "d1", CredentialKind.CARD, "c", now)
    denied = Decision(Reason.UNKNOWN_CREDENTIAL, "r1", "d1", CredentialKind.PIN, "p", now)
    for decision, seconds in ((granted, 0.0005), (granted, 0.001), (denied, 0.005), (denied, 2.0)):
        stats.observe(decision, seconds)
    assert stats.buckets == [2, 1, 1]  # le=0.001 includes 0.001, as Prometheus buckets do; 2.0 is +Inf
    assert stats.counts == {
        (Reason.GRANTED, CredentialKind.CARD): 2,
        (Reason.UNKNOWN_CREDENTIAL, CredentialKind.PIN): 2,
    }
    assert stats.latency_sum == pytest.approx(2.0065)


def test_metrics_address_must_be_loopback() -> None:
    assert MetricsSection(address="::1").address == "::1"
    with pytest.raises(ValueError, match="loopback"):
        MetricsSection(address="0.0.0.0")
    with pytest.raises(ValueError, match="not an IP address"):
        MetricsSection(address="localhost")


def test_menwei_run_serves_metrics(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        DEMO.read_text().replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path}"')
        + f"\n[metrics]\nport = {port}\n"
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
        deadline = time.monotonic() + 30
        samples: Samples = {}
        while not samples and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                samples = scrape(port)
            except OSError:
                time.sleep(0.1)
        assert ("menwei_access_list_version", ()) in samples
        assert ("menwei_outbox_depth", ()) in samples
        assert samples[("menwei_device_online", (("device", "sim-1"),))] == 1
        assert samples[("menwei_decision_latency_seconds_count", ())] == 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err
