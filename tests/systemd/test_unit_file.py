"""systemd/menwei.service: systemd-analyze verify accepts it without a warning, and the settings the
deployment relies on (notify + watchdog, restart, the unprivileged user, credentials, sandbox) are there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "menwei.service"
INSTALLED_BINARY = "/opt/menwei/.venv/bin/menwei"


def _settings() -> dict[str, list[str]]:
    """Key -> values of the [Service] section, in order (keys such as DeviceAllow= repeat)."""
    section = ""
    settings: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}{key}", []).append(value)
    return settings


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: scripts/setup installs systemd"
    # verify checks that ExecStart='s program exists and is executable; /opt/menwei is not installed here, so
    # point it at this interpreter (verify never runs it).
    unit = tmp_path / "menwei.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, sys.executable))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    # Unknown keys and bad values are only warnings ("..., ignoring"): any line naming the unit fails.
    problems = [line for line in proc.stderr.splitlines() if str(unit) in line or "menwei" in line]
    assert problems == [], "\n".join(problems)


def test_verify_would_catch_a_typo(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    unit = tmp_path / "typo.service"
    unit.write_text("[Service]\nType=simple\nExecStart=/bin/true\nNoNewPrivilegez=yes\n")
    proc = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert "NoNewPrivilegez" in proc.stderr


def test_notify_watchdog_and_restart() -> None:
    s = _settings()
    assert s["[Service]Type"] == ["notify"]
    assert s["[Service]NotifyAccess"] == ["main"]
    assert int(s["[Service]WatchdogSec"][0]) >= 10
    assert s["[Service]Restart"] == ["on-failure"]
    assert s["[Service]ExecStart"] == [f"{INSTALLED_BINARY} run --config /etc/menwei/menwei.toml"]


def test_runs_as_its_own_user_with_only_the_groups_it_needs() -> None:
    s = _settings()
    assert s["[Service]User"] == ["menwei"]
    assert sorted(s["[Service]SupplementaryGroups"][0].split()) == ["bluetooth", "dialout", "video"]
    assert s["[Service]StateDirectory"] == ["menwei"]
    assert s["[Service]CapabilityBoundingSet"] == [""]


def test_loads_every_credential_the_gateway_reads() -> None:
    loaded = {v.split(":")[0] for v in _settings()["[Service]LoadCredential"]}
    assert loaded == {
        "pin-key",
        "pass-walkin-key",
        "mqtt-password",
        "mqtt-client-key",
        "face-key",
        "ble-key-store",
        "console-tls-key",
        "ha-mqtt-password",
    }
    # The fixed names in the code must be among them (the others are config defaults, checked below).
    sources = "\n".join(p.read_text() for p in (ROOT / "edge").rglob("*.py")) + "\n".join(
        p.read_text() for p in (ROOT / "cloud-sync").rglob("*.py")
    )
    for fixed in re.findall(r'_CREDENTIAL = "([a-z0-9-]+)"', sources):
        assert fixed in loaded, fixed
    # ...and every loaded name is one the code or the example config actually uses.
    example = (ROOT / "config" / "menwei.example.toml").read_text()
    for name in loaded:
        assert f'"{name}"' in example + sources, name


def test_sandbox_still_reaches_serial_and_video() -> None:
    s = _settings()
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
    }.items():
        assert s[f"[Service]{key}"] == [value], key
    families = set(s["[Service]RestrictAddressFamilies"][0].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_BLUETOOTH", "AF_NETLINK"}
    allowed = {v.split()[0] for v in s["[Service]DeviceAllow"]}
    assert {"char-ttyS", "char-ttyUSB", "char-ttyACM", "char-video4linux"} <= allowed
    assert "PrivateDevices" not in " ".join(s)  # it would hide /dev/ttyUSB0 and /dev/video0
