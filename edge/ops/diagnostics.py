"""`menwei diagnostics`: a support bundle (tar.gz) that a site can mail to support without a breach.

What goes in, and what never does:

    system.json     menwei version, platform, Python, the installed packages and their versions
    config.json     the config file with usernames, URL credentials and anything secret-ish redacted
                    (credential NAMES stay: they say what is configured, not what it is); hosts stay
    status.json     `menwei status --json` (counts, ids, door modes; no personal data)
    database.json   schema version, row counts per table, PRAGMA quick_check, journal mode, page figures
    journal.txt     the last lines of `journalctl -u menwei`, through edge.redact like the live logs
    metrics.txt     a scrape of the loopback metrics endpoint, if [metrics] is configured and it answers
    README.txt      what the bundle holds and what was left out

Never: rows of any table (names, card numbers, PIN digests, pass tokens and labels, face templates live
there), face snapshots, backups, credential files. Every text member is passed through `redact()` once more
before it is written, in case a value slipped into a place the structure did not foresee.

The database is read through the same read-only WAL reader as `menwei status`: a bundle can be taken from a
running gate.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import distributions
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from edge.errors import ConfigError
from edge.ops.status import DB_NAME, gather, read_only, scrape
from edge.redact import REDACTED, redact

JOURNAL_LINES = 2000
JOURNAL_COMMAND: tuple[str, ...] = (
    "journalctl",
    "-u",
    "menwei",
    "-n",
    str(JOURNAL_LINES),
    "-o",
    "cat",
    "--no-pager",
)

# Config keys whose values go: who someone is, or a secret that should never have been in the file.
# Keys ending in _credential (and the [secrets] section) hold credential NAMES and stay.
_SENSITIVE_KEY = re.compile(
    r"(^|_)(user|username|password|passwd|passphrase|secret|token|pin|key)(_|$)", re.I
)


def diagnostics_main(
    config_path: Path, out: Path | None, *, version: str, journal: Sequence[str] | None = JOURNAL_COMMAND
) -> int:
    """The `menwei diagnostics` command: write the bundle, print where it is."""
    path = write_bundle(config_path, out, version=version, journal=journal)
    print(f"support bundle written: {path} ({path.stat().st_size} bytes); it holds no personal data")
    return 0


def write_bundle(
    config_path: Path,
    out: Path | None = None,
    *,
    version: str,
    journal: Sequence[str] | None = JOURNAL_COMMAND,
    now: datetime | None = None,
) -> Path:
    now = now or datetime.now(UTC)
    members: dict[str, str] = {}
    notes: list[str] = []
    members["system.json"] = _json(_system(version))

    raw: dict[str, Any] = {}
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        notes.append(f"config {config_path} unreadable: {err}")
    members["config.json"] = _json(redact_config(raw))

    gateway_id = "unknown"
    try:
        from edge.config import load_config

        config = load_config(config_path)
    except ConfigError as err:
        notes.append(f"config does not validate, so no status or database figures:\n{err}")
        config = None
    if config is not None:
        gateway_id = config.gateway.id
        members["status.json"] = _json(gather(config, version=version, now=now).to_json())
        members["database.json"] = _json(database_figures(config.gateway.data_dir / DB_NAME))
        if config.metrics is not None:
            host = f"[{config.metrics.address}]" if ":" in config.metrics.address else config.metrics.address
            url = f"http://{host}:{config.metrics.port}/metrics"
            try:
                members["metrics.txt"], _ = scrape(url)
            except OSError as err:
                notes.append(f"metrics endpoint {url} did not answer: {err}")
    if journal is not None:
        members["journal.txt"] = _journal(journal, notes)

    members["README.txt"] = _readme(now, sorted(members), notes)
    if out is None:
        out = Path.cwd() / f"menwei-diagnostics-{gateway_id}-{now.strftime('%Y%m%dT%H%M%SZ')}.tar.gz"
    _write_tar(out, {name: redact(text) for name, text in members.items()}, now)
    return out


# --- the parts -------------------------------------------------------------------------------------------


def redact_config(value: Any, key: str = "", section: str = "") -> Any:
    """The parsed config with usernames, URL user parts and secret-ish values replaced."""
    if isinstance(value, dict):
        return {k: redact_config(v, k, section or k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_config(v, key, section) for v in value]
    if section == "secrets" or key.endswith(("_credential", "_credentials")):
        return value  # credential names
    if isinstance(value, str) and _SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        return _strip_userinfo(value)
    if isinstance(value, str):
        return redact(value)
    return value


def _strip_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def database_figures(path: Path) -> dict[str, Any]:
    """Counts and checks, never rows."""
    if not path.exists():
        return {"path": str(path), "error": "no database"}
    figures: dict[str, Any] = {"path": str(path)}
    try:
        with read_only(path) as conn:
            figures["schema_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
            figures["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            figures["page_size"] = conn.execute("PRAGMA page_size").fetchone()[0]
            figures["page_count"] = conn.execute("PRAGMA page_count").fetchone()[0]
            figures["freelist_count"] = conn.execute("PRAGMA freelist_count").fetchone()[0]
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            rows: dict[str, int] = {}
            for t in tables:  # names from sqlite_master, quoted
                rows[t] = conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # noqa: S608
            figures["rows"] = rows
            started = time.monotonic()
            check = [r[0] for r in conn.execute("PRAGMA quick_check(20)")]
            figures["quick_check"] = "ok" if check == ["ok"] else check
            figures["quick_check_seconds"] = round(time.monotonic() - started, 3)
    except sqlite3.Error as err:
        figures["error"] = str(err)
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            figures[f"size{suffix or '_db'}_bytes"] = p.stat().st_size
    return figures


def _system(version: str) -> dict[str, Any]:
    packages = sorted(
        {(d.metadata["Name"] or "?", d.version) for d in distributions() if d.metadata["Name"]},
        key=lambda p: p[0].lower(),
    )
    return {
        "menwei": version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version,
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "packages": dict(packages),
    }


def _journal(command: Sequence[str], notes: list[str]) -> str:
    if shutil.which(command[0]) is None:
        notes.append(f"{command[0]} not found: no journal")
        return ""
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        notes.append(f"journal not read: {err}")
        return ""
    if proc.returncode != 0:
        notes.append(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return "\n".join(redact(line) for line in proc.stdout.splitlines()) + "\n"


def _readme(now: datetime, names: list[str], notes: list[str]) -> str:
    lines = [
        f"menwei support bundle, {now.isoformat(timespec='seconds')}",
        "",
        "Holds: " + ", ".join([*names, "README.txt"]),
        "Left out on purpose: table rows (names, card numbers, PIN digests, pass tokens, face templates),",
        "face snapshots, backups and credentials. Usernames and secrets in the config and the journal are",
        "redacted (edge/redact.py).",
    ]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str) + "\n"


def _write_tar(out: Path, members: dict[str, str], now: datetime) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # hosts and topology: not for everyone
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        folder = out.name.removesuffix(".tar.gz")
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o600
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
