"""`menwei install-service --root DIR`: the unit, the sysusers.d user with its groups (applied by the real
systemd-sysusers), tmpfiles.d, /etc/menwei with the example config and /etc/credstore; the installed unit
passes `systemd-analyze verify --root` against the image; a second run changes nothing it should keep; the
files a wheel ships are the ones the installer reads."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from edge.cli import main
from edge.ops.install import EXAMPLE_CONFIG, SHIPPED_BINARY, SYSUSERS, TMPFILES, UNIT

ROOT = Path(__file__).resolve().parents[2]


def members(root: Path, group: str) -> list[str]:
    for line in (root / "etc" / "group").read_text().splitlines():
        name, _, _, users = line.split(":")
        if name == group:
            return users.split(",") if users else []
    raise AssertionError(f"no group {group}")


def test_install_under_a_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "image"
    assert main(["install-service", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "not started" in out

    unit = root / "etc/systemd/system/menwei.service"
    # This environment is not inside the image: the unit keeps the documented /opt/menwei path.
    assert f"ExecStart={SHIPPED_BINARY} run --config /etc/menwei/menwei.toml" in unit.read_text()
    assert (unit.stat().st_mode & 0o777) == 0o644
    assert (root / "etc/sysusers.d/menwei.conf").is_file()
    assert (root / "etc/tmpfiles.d/menwei.conf").read_text() == (ROOT / "systemd" / TMPFILES).read_text()

    passwd = (root / "etc/passwd").read_text()
    assert "menwei:x:" in passwd and ":/var/lib/menwei:/usr/sbin/nologin" in passwd
    for group in ("dialout", "video", "bluetooth"):
        assert members(root, group) == ["menwei"], group

    config_dir = root / "etc/menwei"
    assert (config_dir.stat().st_mode & 0o777) == 0o750
    assert (config_dir / "menwei.toml").read_text() == (ROOT / "config" / EXAMPLE_CONFIG).read_text()
    assert ((root / "etc/credstore").stat().st_mode & 0o777) == 0o700


def test_installed_unit_verifies_against_the_image(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: scripts/setup installs systemd"
    root = tmp_path / "image"
    # The image: systemd's own units (sysinit.target, ...) and the menwei the unit starts.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    binary = root / SHIPPED_BINARY.lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert main(["install-service", "--root", str(root), "--no-start"]) == 0
    proc = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", "/etc/systemd/system/menwei.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    problems = [line for line in proc.stderr.splitlines() if "menwei" in line]
    assert problems == [], "\n".join(problems)

    binary.unlink()  # and it would notice a unit whose program is missing from the image
    proc = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", "/etc/systemd/system/menwei.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "menwei" in proc.stderr


def test_a_second_run_keeps_the_config_and_adds_gpio_when_the_image_has_it(tmp_path: Path) -> None:
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    (root / "etc/group").write_text("gpio:x:993:\n")
    assert main(["install-service", "--root", str(root)]) == 0
    assert "m menwei gpio" in (root / "etc/sysusers.d/menwei.conf").read_text()
    assert members(root, "gpio") == ["menwei"]

    config = root / "etc/menwei/menwei.toml"
    config.write_text("# edited by the installer of this site\n")
    assert main(["install-service", "--root", str(root)]) == 0
    assert config.read_text() == "# edited by the installer of this site\n"
    assert members(root, "gpio") == ["menwei"]
    assert (root / "etc/passwd").read_text().count("menwei:x:") == 1


def test_a_wheel_ships_what_the_installer_reads() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = setuptools["data-files"]
    assert sorted(data["share/menwei/systemd"]) == sorted(f"systemd/{n}" for n in (UNIT, SYSUSERS, TMPFILES))
    assert data["share/menwei/config"] == [f"config/{EXAMPLE_CONFIG}"]
    for files in data.values():
        for name in files:
            assert (ROOT / name).is_file(), name
