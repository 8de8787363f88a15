"""`menwei status`: one screen of health, read without disturbing a running gateway.

Why read-only and out of process: the operator runs this on a live gate. The database is opened with
SQLite's `mode=ro` URI (a WAL reader: it never blocks the event writer and cannot write, not even a
checkpoint), the service state comes from `systemctl is-active`, and what only the running process knows
(device states, the cloud link) is scraped from its loopback metrics endpoint when [metrics] is configured.
Nothing here takes a lock the gateway waits for.

Exit code: 0 healthy, 1 degraded (each reason listed under "problems"), 2 the config cannot be read
(raised as ConfigError to edge/cli.py). Alarms no guard has acknowledged yet (edge/alarms.py) are counted
and degrade the gateway when it has a [console] to acknowledge them in; without one nobody can, so they are
shown but do not keep it degraded for ever. No personal data is read: counts, ids and door names only.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edge.config import GatewayConfig
from edge.store.backup import backup_time, list_backups
from edge.store.upkeep import backup_dir

DB_NAME = "menwei.db"  # edge.gateway.DB_NAME, without importing the runtime
SERVICE = "menwei"

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1

# Thresholds for "degraded". An outbox an hour behind means the cloud has not heard from the gate for an
# hour; 256 MiB is about a million events plus a backup on the SD card.
OUTBOX_MAX_AGE = timedelta(hours=1)
MIN_FREE_BYTES = 256 * 2**20
RECENT = timedelta(hours=1)
RECENT_SCAN_LIMIT = 200_000  # rows read back from the end of the event log at most
SCRAPE_TIMEOUT = 2.0


@dataclass(slots=True)
class Report:
    """Everything `menwei status` found; `to_json()` is the `--json` output, `render()` the screen."""

    site: str
    gateway: str
    version: str
    checked_at: str
    service: str = "unknown"
    database: dict[str, Any] = field(default_factory=dict)
    access_list: dict[str, Any] = field(default_factory=dict)
    doors: dict[str, str] = field(default_factory=dict)
    outbox: dict[str, Any] = field(default_factory=dict)
    last_hour: dict[str, Any] = field(default_factory=dict)
    alarms: dict[str, Any] = field(default_factory=dict)  # unacknowledged, still active, by kind
    backups: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] | None = None  # from the metrics endpoint; None when not configured
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_DEGRADED if self.problems else EXIT_HEALTHY

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["healthy"] = not self.problems
        return data

    def render(self) -> str:
        return "\n".join(_render(self))


def gather(config: GatewayConfig, *, version: str, now: datetime | None = None) -> Report:
    """Build the report for the gateway `config` describes (its data_dir already resolved by load_config)."""
    now = now or datetime.now(UTC)
    report = Report(
        site=config.site.id,
        gateway=config.gateway.id,
        version=version,
        checked_at=now.isoformat(timespec="seconds"),
        service=service_state(),
    )
    if report.service not in ("active", "unknown"):
        report.problems.append(f"service {SERVICE} is {report.service}")
    data_dir = config.gateway.data_dir
    _disk(report, data_dir)
    db_path = data_dir / DB_NAME
    report.doors = {d.id: d.mode for d in config.doors}
    if not db_path.exists():
        report.database["error"] = "no database yet (the gateway has not run)"
        report.problems.append(f"no database at {db_path}")
    else:
        try:
            with read_only(db_path) as conn:
                _database(report, conn, now)
        except sqlite3.Error as err:
            report.database["error"] = str(err)
            report.problems.append(f"database unreadable: {err}")
    waiting = report.alarms.get("unacknowledged", 0)
    if waiting:
        report.alarms["console"] = config.console is not None
        if config.console is not None:
            kinds = ", ".join(f"{k} {n}" for k, n in report.alarms["by_kind"].items())
            report.problems.append(
                f"{waiting} unacknowledged alarm(s) ({kinds}): acknowledge in the guard console"
            )
    _backups(report, config, now)
    if config.metrics is not None:
        _live(report, f"http://{_host(config.metrics.address)}:{config.metrics.port}/metrics", config)
    return report


# --- sources ---------------------------------------------------------------------------------------------


def service_state(unit: str = SERVICE) -> str:
    """`systemctl is-active` (active, inactive, failed, activating, ...), or "unknown" without systemd."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return "unknown"
    try:
        proc = subprocess.run(
            [systemctl, "is-active", unit], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() or "unknown"


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection that cannot write, checkpoint or block the running gateway's writer.

    With a live WAL (-wal and -shm beside the file: the gateway has it open, or crashed) it reads through
    them. Without, it opens the file as immutable: a plain `mode=ro` would create -wal and -shm itself,
    owned by whoever runs `menwei status` (root), and the menwei service could then not open its own
    database."""
    resolved = path.resolve()
    live = Path(f"{resolved}-wal").exists() and Path(f"{resolved}-shm").exists()
    uri = f"file:{quote(str(resolved))}?mode=ro" + ("" if live else "&immutable=1")
    conn = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        conn.execute("PRAGMA query_only = 1")
        yield conn
    finally:
        conn.close()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def scrape(url: str, timeout: float = SCRAPE_TIMEOUT) -> tuple[str, list[Sample]]:
    """The text of a Prometheus endpoint and its samples. Raises OSError (URLError) if it does not answer."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL from config)
        text: str = response.read().decode("utf-8", "replace")
    samples: list[Sample] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        try:
            value = float(m[3])
        except ValueError:
            continue
        samples.append((m[1], dict(_LABEL.findall(m[2] or "")), value))
    return text, samples


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _disk(report: Report, data_dir: Path) -> None:
    probe = data_dir if data_dir.exists() else data_dir.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as err:
        report.database["free_error"] = str(err)
        return
    report.database["data_dir"] = str(data_dir)
    report.database["free_bytes"] = usage.free
    if usage.free < MIN_FREE_BYTES:
        report.problems.append(f"only {_size(usage.free)} free on {probe}")


def _database(report: Report, conn: sqlite3.Connection, now: datetime) -> None:
    db = report.database
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    db["path"] = str(path)
    db["size_bytes"] = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    db["schema_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    acl = report.access_list
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'access_list_version'").fetchone()
        acl["version"] = int(row[0]) if row else 0
    if "people" in tables:
        acl["people"] = conn.execute("SELECT count(*) FROM people").fetchone()[0]
        # Plural keys ("cards": 12): counts, not values, and not mistaken for one by edge.redact.
        acl["credentials"] = {
            f"{kind}s": n for kind, n in conn.execute("SELECT kind, count(*) FROM credentials GROUP BY kind")
        }
        acl["passes"] = conn.execute("SELECT count(*) FROM passes").fetchone()[0]
    if "state" in tables:
        for key, value in conn.execute(
            "SELECT key, value FROM state WHERE key IN ('door_modes', 'lockdown')"
        ):
            if key == "lockdown" and json.loads(value):
                report.doors = dict.fromkeys(report.doors, "lockdown")
                report.problems.append("site lockdown in force")
            elif key == "door_modes":
                for door, mode in json.loads(value).items():
                    if door in report.doors and report.doors[door] != "lockdown":
                        report.doors[door] = str(mode)
    if "console_alarms" in tables:
        _alarms(report, conn)
    if "events" not in tables:
        return
    applied = conn.execute(
        "SELECT at FROM events WHERE type = 'access_list' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if applied is not None:
        acl["applied_at"] = applied[0]
        acl["age_seconds"] = _age(applied[0], now)

    depth = conn.execute("SELECT count(*) FROM events WHERE sync_state = 0").fetchone()[0]
    oldest = conn.execute("SELECT at FROM events WHERE sync_state = 0 ORDER BY seq LIMIT 1").fetchone()
    report.outbox = {"depth": depth, "oldest_age_seconds": _age(oldest[0], now) if oldest else 0.0}
    if report.outbox["oldest_age_seconds"] > OUTBOX_MAX_AGE.total_seconds():
        report.problems.append(
            f"outbox: {depth} events unsent, the oldest {_ago(report.outbox['oldest_age_seconds'])} old"
        )
    _recent(report, conn, now)


def _alarms(report: Report, conn: sqlite3.Connection) -> None:
    """The alarms that wait for a guard (the partial index holds only those), cleared or not."""
    by_kind: Counter[str] = Counter()
    active = 0
    for kind, n, still in conn.execute(
        "SELECT kind, count(*), count(*) - count(cleared_at) FROM console_alarms"
        " WHERE acknowledged_at IS NULL GROUP BY kind"
    ):
        by_kind[str(kind)] = n
        active += still
    report.alarms = {
        "unacknowledged": by_kind.total(),
        "active": active,
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def _recent(report: Report, conn: sqlite3.Connection, now: datetime) -> None:
    """Counts by result and reason over the last hour, read back from the end of the log (no index on
    time: events are appended in time order, so the scan stops at the first older one)."""
    cutoff = now - RECENT
    results: Counter[str] = Counter()
    denials: Counter[str] = Counter()
    alarms: Counter[str] = Counter()
    rows = conn.execute(
        "SELECT at, type, json_extract(payload, '$.granted'), json_extract(payload, '$.reason'),"
        " json_extract(payload, '$.alarm'), json_extract(payload, '$.active') FROM events"
        " WHERE type IN ('decision', 'alarm') ORDER BY seq DESC LIMIT ?",
        (RECENT_SCAN_LIMIT,),
    )
    for at, kind, granted, reason, alarm, active in rows:
        try:
            if datetime.fromisoformat(at) < cutoff:
                break
        except ValueError:
            continue
        if kind == "decision":
            results["granted" if granted else "denied"] += 1
            if not granted:
                denials[str(reason)] += 1
        elif active is None or active:
            alarms[str(alarm)] += 1
    report.last_hour = {
        "decisions": dict(results),
        "denied_by_reason": dict(denials.most_common()),
        "alarms": dict(alarms.most_common()),
    }


def _backups(report: Report, config: GatewayConfig, now: datetime) -> None:
    """The scheduled backups (edge.store.upkeep): how many, the newest by the time in its name. Stale means
    two intervals without a new one (a backup that keeps failing); none at all is reported, not degraded (a
    new gateway takes its first one a minute after it starts)."""
    directory = backup_dir(config)
    found = list_backups(directory)
    report.backups = {"directory": str(directory), "enabled": config.backup.enabled, "count": len(found)}
    if not found:
        return
    newest = found[0]
    taken = backup_time(newest)
    assert taken is not None  # list_backups only lists names with a time
    report.backups.update(
        newest=newest.name, newest_at=taken.isoformat(timespec="seconds"), size_bytes=newest.stat().st_size
    )
    stale = timedelta(hours=2 * config.backup.interval_hours)
    if config.backup.enabled and now - taken > stale:
        report.problems.append(f"newest backup is {_ago((now - taken).total_seconds())} old")


def _live(report: Report, url: str, config: GatewayConfig) -> None:
    live: dict[str, Any] = {"url": url}
    report.live = live
    try:
        _, samples = scrape(url)
    except (OSError, urllib.error.URLError) as err:
        live["error"] = f"not reachable ({getattr(err, 'reason', err)})"
        if report.service == "active":
            report.problems.append(f"metrics endpoint {url} not answering")
        return
    devices = {s[1]["device"]: s[2] == 1.0 for s in samples if s[0] == "menwei_device_online"}
    live["devices"] = devices
    for device, up in sorted(devices.items()):
        if not up:
            report.problems.append(f"device {device} offline")
    values = {s[0]: s[2] for s in samples if not s[1]}
    for name, key in (
        ("menwei_mqtt_connected", "mqtt_connected"),
        ("menwei_sync_last_upload_age_seconds", "last_upload_age_seconds"),
        ("menwei_sync_last_downlink_age_seconds", "last_downlink_age_seconds"),
        ("menwei_access_list_age_seconds", "access_list_age_seconds"),
    ):
        if name in values:
            live[key] = values[name]
    if "mqtt_connected" in live:
        live["mqtt_connected"] = live["mqtt_connected"] == 1.0
        if config.mqtt is not None and not live["mqtt_connected"]:
            report.problems.append(f"cloud broker {config.mqtt.host}:{config.mqtt.port} not connected")


# --- the screen ------------------------------------------------------------------------------------------


def _render(r: Report) -> Iterator[str]:
    yield f"menwei {r.version}: site {r.site}, gateway {r.gateway} ({r.checked_at})"
    yield f"  service      {r.service}"
    db = r.database
    if "path" in db:
        yield (
            f"  database     {db['path']}: {_size(db['size_bytes'])}, schema {db['schema_version']}, "
            f"{_size(db.get('free_bytes', 0))} free"
        )
    else:
        yield f"  database     {db.get('error', 'unknown')}"
    acl = r.access_list
    if acl:
        age = f", applied {_ago(acl['age_seconds'])} ago" if "age_seconds" in acl else ""
        creds = ", ".join(f"{k} {v}" for k, v in sorted(acl.get("credentials", {}).items())) or "none"
        yield f"  access list  version {acl.get('version', 0)}{age}"
        yield (
            f"               {acl.get('people', 0)} people, credentials: {creds}, {acl.get('passes', 0)} passes"
        )
    yield "  doors        " + (", ".join(f"{d} {m}" for d, m in r.doors.items()) or "none")
    if r.outbox:
        waiting = r.outbox["depth"]
        oldest = f", oldest {_ago(r.outbox['oldest_age_seconds'])} old" if waiting else ""
        yield f"  outbox       {waiting} events waiting{oldest}"
    if r.last_hour:
        d = r.last_hour["decisions"]
        denied = ", ".join(f"{k} {v}" for k, v in r.last_hour["denied_by_reason"].items())
        alarms = ", ".join(f"{k} {v}" for k, v in r.last_hour["alarms"].items()) or "none"
        yield (
            f"  last hour    {d.get('granted', 0)} granted, {d.get('denied', 0)} denied"
            + (f" ({denied})" if denied else "")
        )
        yield f"               alarms: {alarms}"
    if r.alarms:
        waiting = r.alarms["unacknowledged"]
        kinds = ", ".join(f"{k} {n}" for k, n in r.alarms["by_kind"].items())
        where = "" if r.alarms.get("console", True) else "; no [console] to acknowledge them"
        yield (
            f"  alarms       {waiting} unacknowledged"
            + (f" ({kinds}; {r.alarms['active']} still active{where})" if waiting else "")
        )
    b = r.backups
    if b.get("count"):
        age = _ago(
            (datetime.fromisoformat(r.checked_at) - datetime.fromisoformat(b["newest_at"])).total_seconds()
        )
        yield f"  backups      {b['count']}, newest {b['newest']} ({age} ago)"
    else:
        yield f"  backups      none in {b.get('directory', '?')}"
    if r.live is not None:
        if "error" in r.live:
            yield f"  live         {r.live['url']}: {r.live['error']}"
        else:
            devices = r.live.get("devices", {})
            shown = ", ".join(f"{k} {'online' if v else 'OFFLINE'}" for k, v in sorted(devices.items()))
            yield f"  devices      {shown or 'none'}"
            if "mqtt_connected" in r.live:
                parts = ["connected" if r.live["mqtt_connected"] else "NOT connected"]
                if "last_upload_age_seconds" in r.live:
                    parts.append(f"last upload {_ago(r.live['last_upload_age_seconds'])} ago")
                if "last_downlink_age_seconds" in r.live:
                    parts.append(f"last downlink {_ago(r.live['last_downlink_age_seconds'])} ago")
                yield "  cloud        " + ", ".join(parts)
    if r.problems:
        yield "DEGRADED:"
        yield from (f"  - {p}" for p in r.problems)
    else:
        yield "healthy"


def _age(text: str, now: datetime) -> float:
    try:
        return max(0.0, (now - datetime.fromisoformat(text)).total_seconds())
    except ValueError:
        return 0.0


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def print_status(config: GatewayConfig, *, version: str, as_json: bool) -> int:
    """The `menwei status` command: print the report, return its exit code."""
    report = gather(config, version=version)
    print(json.dumps(report.to_json(), indent=2) if as_json else report.render())
    return report.exit_code


__all__ = ["Report", "gather", "print_status", "read_only", "scrape", "service_state"]
