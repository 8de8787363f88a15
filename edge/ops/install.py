"""`menwei install-service`: put the gateway under systemd on this machine (or under an image root).

Steps (each idempotent, each printed):
1. the unit (systemd/menwei.service) to /etc/systemd/system/menwei.service, its ExecStart= pointed at the
   `menwei` of the environment this command runs from (the shipped unit assumes /opt/menwei/.venv);
2. the menwei system user and its groups (dialout, video, bluetooth, and gpio where the machine has one) as
   /etc/sysusers.d/menwei.conf, applied with systemd-sysusers;
3. /etc/tmpfiles.d/menwei.conf, and the directories it names: /etc/menwei (0750 root:menwei) with the
   example config as menwei.toml if there is none yet, and /etc/credstore (0700 root) for the secrets;
4. `systemctl daemon-reload` and `systemctl enable --now menwei`, unless --root or --no-start.

With --root DIR everything is written under DIR (an SD-card image being prepared, or a test) and nothing
is started; systemd-sysusers runs with --root too, so the user exists in the image's /etc/passwd.

Where the files come from: the repository checkout this package runs from (an editable install, or the
`git clone` to /opt/menwei that docs/deploy.md describes), else the copies a wheel installs under
<prefix>/share/menwei/ (pyproject.toml data-files).
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SHIPPED_BINARY = "/opt/menwei/.venv/bin/menwei"
UNIT = "menwei.service"
SYSUSERS = "menwei.sysusers.conf"
TMPFILES = "menwei.tmpfiles.conf"
EXAMPLE_CONFIG = "menwei.example.toml"

EXIT_FAILED = 1

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    root: Path  # "/" for this machine
    start: bool  # daemon-reload + enable --now

    @property
    def live(self) -> bool:
        return self.root == Path("/")

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def shipped_file(kind: str, name: str) -> Path:
    """A file shipped with menwei: `kind` is "systemd" or "config". FileNotFoundError if neither the
    checkout nor the wheel's data files have it."""
    import edge

    candidates = [
        Path(edge.__file__).resolve().parents[1] / kind / name,  # checkout / editable install
        Path(sys.prefix) / "share" / "menwei" / kind / name,  # wheel data-files
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{kind}/{name} not found (looked in {', '.join(map(str, candidates))})")


def menwei_binary() -> str:
    """The `menwei` script of the running environment, or the shipped unit's path if there is none."""
    candidate = Path(sys.executable).parent / "menwei"
    return str(candidate) if os.access(candidate, os.X_OK) else SHIPPED_BINARY


def unit_text(binary: str | None = None) -> str:
    text = shipped_file("systemd", UNIT).read_text(encoding="utf-8")
    return text.replace(SHIPPED_BINARY, binary or menwei_binary())


def sysusers_text(plan: Plan) -> str:
    text = shipped_file("systemd", SYSUSERS).read_text(encoding="utf-8")
    if _has_group(plan, "gpio"):
        text += "# This machine has a gpio group (GPIO character devices on a Raspberry Pi).\nm menwei gpio\n"
    return text


def install(plan: Plan, say: Say = print) -> None:
    """Carry out the plan (module docstring). Raises OSError / CalledProcessError on the first failure."""
    binary = menwei_binary()
    if not plan.live and not plan.path(binary).exists():
        binary = SHIPPED_BINARY  # an image: this environment is not in it, the documented one will be
    unit = plan.path("/etc/systemd/system/" + UNIT)
    _write(unit, unit_text(binary), 0o644, say)
    sysusers = plan.path("/etc/sysusers.d/menwei.conf")
    _write(sysusers, sysusers_text(plan), 0o644, say)
    _write(
        plan.path("/etc/tmpfiles.d/menwei.conf"),
        shipped_file("systemd", TMPFILES).read_text(encoding="utf-8"),
        0o644,
        say,
    )
    _sysusers(plan, sysusers, say)

    config_dir = _directory(plan, "/etc/menwei", 0o750, "menwei", say)
    config = config_dir / "menwei.toml"
    if config.exists():
        say(f"kept      {config} (it exists)")
    else:
        _write(config, shipped_file("config", EXAMPLE_CONFIG).read_text(encoding="utf-8"), 0o640, say)
        _chown(plan, config, "menwei")
        say("          edit it, then: menwei validate-config /etc/menwei/menwei.toml")
    _directory(plan, "/etc/credstore", 0o700, None, say)

    if not plan.live:
        say(f"not started: installed under {plan.root}")
        return
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        say("not started: systemd is not running here")
        return
    _run(["systemctl", "daemon-reload"], say)
    if plan.start:
        _run(["systemctl", "enable", "--now", "menwei"], say)
        say("started   systemctl status menwei; journalctl -u menwei -f")
    else:
        say("not started (--no-start): systemctl enable --now menwei")


def install_main(root: Path | None, *, start: bool) -> int:
    """The `menwei install-service` command."""
    plan = Plan(Path("/") if root is None else root.resolve(), start and root is None)
    try:
        install(plan)
    except (OSError, subprocess.CalledProcessError) as err:
        hint = " (run it as root)" if isinstance(err, PermissionError) else ""
        print(f"menwei install-service: {err}{hint}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# --- steps -----------------------------------------------------------------------------------------------


def _write(path: Path, text: str, mode: int, say: Say) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        say(f"unchanged {path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)
    say(f"wrote     {path}")


def _directory(plan: Plan, absolute: str, mode: int, group: str | None, say: Say) -> Path:
    path = plan.path(absolute)
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if group is not None:
        _chown(plan, path, group)
    say(f"{'kept' if existed else 'created':<9} {path} ({mode:o})")
    return path


def _chown(plan: Plan, path: Path, group: str) -> None:
    """root:<group>, when we are root and the group exists (in the image's /etc/group under --root)."""
    if os.geteuid() != 0:
        return
    gid = _group_id(plan, group)
    if gid is not None:
        os.chown(path, 0, gid)


def _group_id(plan: Plan, name: str) -> int | None:
    if plan.live:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None
    group_file = plan.path("/etc/group")
    if not group_file.is_file():
        return None
    for line in group_file.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def _has_group(plan: Plan, name: str) -> bool:
    return _group_id(plan, name) is not None


def _sysusers(plan: Plan, conf: Path, say: Say) -> None:
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        say("skipped   systemd-sysusers not found: create the user by hand (docs/deploy.md)")
        return
    if plan.live and os.geteuid() != 0:
        raise PermissionError(f"creating the menwei user needs root ({tool} {conf})")
    args = [tool] if plan.live else [tool, f"--root={plan.root}"]
    plan.path("/etc").mkdir(parents=True, exist_ok=True)
    _run([*args, str(conf)], say)


def _run(argv: list[str], say: Say) -> None:
    say(f"running   {' '.join(argv)}")
    subprocess.run(argv, check=True, timeout=120)
