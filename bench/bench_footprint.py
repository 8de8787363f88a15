"""The gateway's footprint (issue #9): memory, idle CPU, cold start and SD-card write volume.

Every measurement runs in a FRESH process started for it; the parent only prepares files and reads /proc:
  a. `menwei run` (python -m edge.cli run) idle with an empty access list;
  b. the same with 100,000 people, 200,000 cards and 100,000 visitor passes stored and loaded;
  c. (b) plus a face-camera reader: its worker process loads the model pack (+ MiniFASNet) and a gallery of
     20,000 enrolled faces (synthetic sealed templates); the camera is a local MJPEG stream at 10 fps that
     shows a stranger's face for a few seconds (so detection, embedding, liveness and the 1:N search all run
     once), then an empty scene. Memory is the sum over the process tree (gateway, face worker,
     multiprocessing's resource tracker): RSS, PSS (shared pages split, so the sum is honest) and USS;
  d. idle CPU over a stretch of idle wall time: utime+stime of the whole tree;
  e. cold start: exec of a fresh interpreter that does what `menwei run` does, until the first decision on a
     card read at a simulated reader, split into interpreter start, imports, config and devices, gateway start
     (of which: loading the access list) and the decision; with the database in the page cache and evicted;
  f. bytes written per 1,000 decisions (half granted, half denied; each committed on its own, as at a gate,
     and as one burst) with synchronous=full and =normal: /proc/<pid>/io write_bytes (what reaches the block
     layer, page-granular), the WAL/database growth, and the checkpoint that later copies the WAL into the
     database.
Baselines in the same run: a bare interpreter's memory; a bare sqlite3 insert loop (same pragmas, same payload
size, one commit per row) for the write volume.

    .venv/bin/python bench/bench_footprint.py [--quick] [--pack opencv_yunet_sface] [--people 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
PHOTO = SHARED / "data" / "faces" / "obama" / "obama.jpg"
FACE_KEY_HEX = "5a" * 32
DOORS = ("a", "b", "c")
TARGET_MB = 400.0
UNKNOWN_CARD = "999999999"

# --- /proc ---------------------------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (Linux: /proc/<pid>/task/<tid>/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS, USS (private clean + dirty) in MB from smaps_rollup, VmHWM (peak RSS) from status."""
    kb: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                kb[parts[0][:-1]] = int(parts[1])
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                kb["HWM"] = int(line.split()[1])
    uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return {"rss": kb["Rss"] / 1024, "pss": kb["Pss"] / 1024, "uss": uss / 1024, "hwm": kb["HWM"] / 1024}


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    if "resource_tracker" in text:
        return "resource tracker"
    if "multiprocessing" in text or "spawn_main" in text:
        return "face worker"
    return "gateway"


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def io_counters(pid: int | str = "self") -> dict[str, int]:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def evict(path: Path) -> None:
    """Drop one file's clean pages from the page cache (other processes' files are left alone)."""
    if path.exists():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# --- the data set (child: --prepare) --------------------------------------------------------------------------


def prepare(data: Path, people: int, faces: int, pack: str) -> None:
    """menwei.db with the synthetic site (+ FACE credentials and consent for `faces` people) and faces.db with
    `faces` sealed synthetic templates for `pack`."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from synthetic import big_access_list

    from edge.face.packs import load_pack
    from edge.face.templates import TemplateStore
    from edge.model import Credential, CredentialKind
    from edge.store.access_store import save_access_list
    from edge.store.db import open_db

    data.mkdir(parents=True, exist_ok=True)
    acl = big_access_list(people, list(DOORS), datetime.now(UTC), pass_window=timedelta(days=30))
    for i in range(min(faces, people)):
        pid = f"p{i}"
        acl.people[pid] = replace(acl.people[pid], face_consent=True)
        cred = Credential(CredentialKind.FACE, f"face-{i}", pid)
        acl.credentials[cred.key] = cred
    db = open_db(data / "menwei.db")
    save_access_list(db, acl)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    del acl
    if faces:
        loaded = load_pack(MODELS / pack)
        dim = loaded.manifest.recognizer.embedding_size
        store = TemplateStore.open(data, bytes.fromhex(FACE_KEY_HEX))
        store._db.conn.execute("PRAGMA synchronous = OFF")  # bench set-up only: 20,000 commits without fsync
        rng = np.random.default_rng(9)
        for i in range(faces):
            v = rng.standard_normal(dim).astype(np.float32)
            store.add(f"face-{i}", f"p{i}", loaded.name, v / np.linalg.norm(v), "bench")
        store.close()


# --- config ---------------------------------------------------------------------------------------------------


def write_config(
    data: Path,
    *,
    synchronous: str = "full",
    face_source: str | None = None,
    pack: str = "",
    unlock: float = 5,
) -> Path:
    lines = [
        '[site]\nid = "bench"\nname = "Bench"\ntimezone = "UTC"\n',
        f'[gateway]\nid = "gw-bench"\ndata_dir = "{data}"\n',
        '[logging]\nlevel = "info"\nformat = "text"\n',
        f'[store]\nsynchronous = "{synchronous}"\n',
        '[[controllers]]\ntype = "simulated"\nid = "sim-1"\noutputs = 4\ninputs = 12\n',
    ]
    for n, door in enumerate(DOORS, 1):
        lines.append(
            f'[[doors]]\nid = "{door}"\nname = "Door {door}"\ncontroller = "sim-1"\noutput = {n}\n'
            f"unlock_seconds = {unlock}\ncontact_input = {3 * n - 2}\n"
        )
        lines.append(f'[[readers]]\ntype = "simulated"\nid = "{door}-in"\ndoor = "{door}"\n')
    if face_source is not None:
        lines.append(
            f'[face]\npack_dir = "{MODELS / pack}"\nthreads = 1\nantispoof_dir = "{MODELS / "minifasnet"}"\n'
        )
        lines.append(
            f'[[readers]]\ntype = "face-camera"\nid = "a-face"\ndoor = "a"\nsource = "{face_source}"\n'
        )
    path = data / "bench.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STATE_DIRECTORY", None)
    env.pop("NOTIFY_SOCKET", None)
    env["MENWEI_SECRET_FACE_KEY"] = FACE_KEY_HEX
    return env


# --- a simulated camera: MJPEG over HTTP at 10 fps ------------------------------------------------------------


class Camera:
    """Serves an empty scene, or a stranger's face while `face_until` is in the future."""

    def __init__(self) -> None:
        import http.server
        import socketserver

        import cv2
        import numpy as np

        empty = np.full((480, 640, 3), 90, np.uint8)
        photo = cv2.imread(str(PHOTO))
        if photo is None:
            raise SystemExit(f"cannot read {PHOTO}")
        scale = 400 / photo.shape[0]
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        face = empty.copy()
        x, y = (640 - small.shape[1]) // 2, 40
        face[y : y + small.shape[0], x : x + small.shape[1]] = small
        self.empty = cv2.imencode(".jpg", empty)[1].tobytes()
        self.face = cv2.imencode(".jpg", face)[1].tobytes()
        self.face_until = 0.0
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while True:
                        jpg = camera.face if time.monotonic() < camera.face_until else camera.empty
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                        self.wfile.write(head + jpg + b"\r\n")
                        time.sleep(0.1)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- a/b/c/d: the real `menwei run` -----------------------------------------------------------------------------


class Running:
    """`python -m edge.cli run --config` with NOTIFY_SOCKET: ready when it sends READY=1."""

    def __init__(self, config: Path, tmp: Path) -> None:
        sock_path = tmp / f"notify-{time.monotonic_ns()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        env = child_env()
        env["NOTIFY_SOCKET"] = str(sock_path)
        self.lines: list[str] = []
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def wait_ready(self, timeout: float = 120) -> float:
        self.sock.settimeout(timeout)
        while True:
            message = self.sock.recv(4096).decode()
            if "READY=1" in message:
                return time.monotonic() - self.started

    def wait_log(self, *texts: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not any(t in line for line in self.lines for t in texts):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"no {texts!r} in the gateway's log:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.2)

    def memory(self) -> list[tuple[str, int, dict[str, float]]]:
        return [(comm(p), p, smaps(p)) for p in process_tree(self.proc.pid)]

    def idle_cpu(self, seconds: float) -> tuple[float, dict[str, float]]:
        pids = process_tree(self.proc.pid)
        before = {p: cpu_seconds(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        per = {f"{comm(p)} {p}": (cpu_seconds(p) - before[p]) / wall * 100 for p in pids}
        return sum(per.values()), per

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


def bare_interpreter() -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    proc.stdout.readline()
    mem = smaps(proc.pid)
    proc.stdin.close()
    proc.wait()
    return mem


def print_memory(label: str, rows: list[tuple[str, int, dict[str, float]]]) -> dict[str, float]:
    total = {k: sum(m[k] for _, _, m in rows) for k in ("rss", "pss", "uss")}
    print(f"{label}")
    for name, pid, m in rows:
        print(
            f"    {name:<18} pid {pid:<8} RSS {m['rss']:7.1f}   PSS {m['pss']:7.1f}   USS {m['uss']:7.1f}"
            f"   peak RSS {m['hwm']:7.1f} MB"
        )
    if len(rows) > 1:
        print(
            f"    {'total':<27} RSS {total['rss']:7.1f}   PSS {total['pss']:7.1f}   USS {total['uss']:7.1f} MB"
        )
    return total


def run_gateways(master: Path, tmp: Path, args: argparse.Namespace) -> None:
    bare = bare_interpreter()
    print(
        f"baseline: bare python interpreter             RSS {bare['rss']:7.1f}   PSS {bare['pss']:7.1f}"
        f"   USS {bare['uss']:7.1f} MB"
    )
    # a. empty access list
    data = tmp / "a"
    data.mkdir()
    gw = Running(write_config(data), tmp)
    ready = gw.wait_ready()
    time.sleep(args.settle)
    a = print_memory(f"a. menwei run, empty access list (ready in {ready:.2f} s)", gw.memory())
    cpu_a, _ = gw.idle_cpu(args.idle)
    gw.stop()
    # b. 100k people
    data = tmp / "b"
    shutil.copytree(master, data)
    gw = Running(write_config(data), tmp)
    ready = gw.wait_ready()
    time.sleep(args.settle)
    b = print_memory(
        f"b. menwei run, {args.people:,} people / {2 * args.people:,} cards / {args.people:,} passes"
        f" (+{args.faces:,} face credentials) loaded (ready in {ready:.2f} s)",
        gw.memory(),
    )
    print(f"    access list: +{b['rss'] - a['rss']:.1f} MB RSS over (a)")
    cpu_b, _ = gw.idle_cpu(args.idle)
    gw.stop()
    # c. + face pipeline
    camera = Camera()
    data = tmp / "c"
    shutil.copytree(master, data)
    gw = Running(write_config(data, face_source=camera.url, pack=args.pack), tmp)
    ready = gw.wait_ready()
    gw.wait_log("templates")  # the face worker's Ready: pack loaded, gallery built
    camera.face_until = time.monotonic() + args.face_seconds
    # the stranger went through the whole pipeline (a still photo may be refused as a presentation attack)
    gw.wait_log("face reader a-face: unknown", "face reader a-face: presentation attack")
    time.sleep(max(0.0, camera.face_until - time.monotonic()) + args.settle)
    c = print_memory(
        f"c. (b) + face-camera reader: {args.pack} + MiniFASNet, {args.faces:,} enrolled faces,"
        f" after a stranger was seen",
        gw.memory(),
    )
    verdict = "met" if c["pss"] <= TARGET_MB else "MISSED"
    print(
        f"    all in: PSS {c['pss']:.1f} MB against the {TARGET_MB:.0f} MB target: {verdict}"
        f" (USS {c['uss']:.1f} MB: pages no other process shares; the RSS sum {c['rss']:.1f} MB counts shared"
        " libraries once per process)"
    )
    cpu_c, per_c = gw.idle_cpu(args.idle)
    gw.stop()
    camera.close()
    print(
        f"d. idle CPU over {args.idle:.0f} s wall (utime+stime of the process tree, % of one core; noisy machine)"
    )
    print(
        f"    (a) empty list {cpu_a:6.2f} %   (b) 100k list {cpu_b:6.2f} %   (c) + face camera, empty scene"
        f" at 10 fps {cpu_c:6.2f} %"
    )
    print("    (c) by process: " + ", ".join(f"{k} {v:.2f} %" for k, v in per_c.items()))


# --- e: cold start (child: --cold) ------------------------------------------------------------------------------


def cold_child(config_path: Path) -> None:
    t_main = time.time()
    import asyncio

    import edge.gateway
    from drivers.reader import CredentialRead
    from edge.config import load_config
    from edge.devices import build_devices
    from edge.gateway import Gateway
    from edge.logs import setup_logging
    from edge.model import CredentialKind
    from edge.ops.notify import Notifier

    t_imports = time.time()
    spent: dict[str, float] = {}
    original = edge.gateway.load_access_list  # type: ignore[attr-defined]

    def timed_load(db: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(db)
        finally:
            spent["load"] = time.perf_counter() - t

    edge.gateway.load_access_list = timed_load  # type: ignore[attr-defined]
    config = load_config(config_path)
    setup_logging("warning", config.logging.format)

    async def serve() -> dict[str, float]:
        marks: dict[str, float] = {}
        gateway = Gateway(config, build_devices(config))
        Notifier.from_env()
        marks["devices"] = time.time()
        await gateway.start()
        marks["started"] = time.time()
        decision = gateway.present(CredentialRead("a-in", CredentialKind.CARD, "10000001"))
        marks["decided"] = time.time()
        assert decision.granted, decision
        assert gateway.events is not None
        await asyncio.to_thread(gateway.events.flush)
        marks["stored"] = time.time()
        await gateway.stop()
        return marks

    marks = asyncio.run(serve())
    print(json.dumps({"main": t_main, "imports": t_imports, "load": spent["load"], **marks}))


def run_cold(master: Path, tmp: Path, runs: int) -> None:
    data = tmp / "e"
    shutil.copytree(master, data)
    config = write_config(data)
    print("e. cold start: exec -> first decision on a card at a simulated reader (the list on disk), seconds")
    print(
        "    cache         interpreter  imports  config+devices  start (load list)   decide   total   +stored"
    )
    for evicted in [False] * runs + [True] * runs:
        if evicted:
            for name in ("menwei.db", "menwei.db-wal"):
                evict(data / name)
        t0 = time.time()
        out = subprocess.run(
            [sys.executable, __file__, "--cold", str(config)],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"    {'db evicted' if evicted else 'db cached':<13} {m['main'] - t0:8.2f}  {m['imports'] - m['main']:8.2f}"
            f"  {m['devices'] - m['imports']:12.2f}  {m['started'] - m['devices']:7.2f} ({m['load']:5.2f})"
            f"  {(m['decided'] - m['started']) * 1000:6.2f} ms {m['decided'] - t0:6.2f}"
            f"  {m['stored'] - t0:7.2f}"
        )


# --- f: write volume (children: --writes, --sqlite) ----------------------------------------------------------------


def _files(data: Path) -> dict[str, int]:
    return {
        n: (data / n).stat().st_size if (data / n).exists() else 0 for n in ("menwei.db", "menwei.db-wal")
    }


def _checkpoint(db: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def writes_child(config: Path, events: int, burst: bool) -> None:
    import asyncio

    from drivers.reader import CredentialRead
    from edge.config import load_config
    from edge.devices import build_devices
    from edge.gateway import Gateway
    from edge.logs import setup_logging
    from edge.model import CredentialKind

    cfg = load_config(config)
    setup_logging("warning", "text")
    data = cfg.gateway.data_dir
    db = data / "menwei.db"

    async def run() -> dict[str, Any]:
        import sqlite3

        gateway = Gateway(cfg, build_devices(cfg))
        await gateway.start()
        assert gateway.events is not None
        log = gateway.events
        await asyncio.sleep(0.5)
        await asyncio.to_thread(log.flush)
        await asyncio.to_thread(_checkpoint, db)
        rows0 = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]
        io0, files0 = io_counters(), _files(data)
        granted = 0
        for i in range(events):
            value = str(10_000_000 + i) if i % 2 == 0 else UNKNOWN_CARD
            granted += gateway.present(
                CredentialRead(f"{DOORS[i % 3]}-in", CredentialKind.CARD, value)
            ).granted
            if not burst:
                await asyncio.to_thread(log.flush)  # one decision at a time, as at a gate
            elif i % 50 == 49:
                await asyncio.sleep(0)
        await asyncio.sleep(cfg.doors[0].unlock_seconds + 0.3)  # the relock events of the last grants
        await asyncio.to_thread(log.flush)
        io1, files1 = io_counters(), _files(data)
        conn = sqlite3.connect(db)
        rows1 = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        payload = conn.execute(
            "SELECT avg(length(payload) + length(id) + length(hash) + length(prev_hash) + 40) FROM events"
            " WHERE seq > (SELECT max(seq) FROM events) - ?",
            (rows1 - rows0,),
        ).fetchone()[0]
        conn.close()
        await asyncio.to_thread(_checkpoint, db)
        io2 = io_counters()
        await gateway.stop()
        return {
            "granted": granted,
            "rows": rows1 - rows0,
            "row_bytes": payload,
            "write_bytes": io1["write_bytes"] - io0["write_bytes"],
            "wchar": io1["wchar"] - io0["wchar"],
            "checkpoint_bytes": io2["write_bytes"] - io1["write_bytes"],
            "wal_growth": files1["menwei.db-wal"] - files0["menwei.db-wal"],
            "db_growth": files1["menwei.db"] - files0["menwei.db"],
        }

    print(json.dumps(asyncio.run(run())))


def sqlite_child(path: Path, synchronous: str, rows: int, row_bytes: int) -> None:
    """Baseline: a bare insert loop, one commit per row, with the gateway's pragmas."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA wal_autocheckpoint = 2000")
    conn.execute("CREATE TABLE IF NOT EXISTS t (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    payload = "x" * row_bytes
    io0 = io_counters()
    for _ in range(rows):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
        conn.execute("COMMIT")
    io1 = io_counters()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    io2 = io_counters()
    conn.close()
    out = {
        "write_bytes": io1["write_bytes"] - io0["write_bytes"],
        "checkpoint_bytes": io2["write_bytes"] - io1["write_bytes"],
    }
    print(json.dumps(out))


def run_writes(master: Path, tmp: Path, events: int, people: int) -> None:
    print(
        f"f. SD write volume: {events:,} decisions (every other one granted) at {people:,} people; bytes that"
        " reached the block layer (/proc/<pid>/io write_bytes)"
    )
    print(
        "    synchronous  pace        events  KB written  KB/1000 ev  +checkpoint KB  write() KB  files grew KB"
        "  bytes/event  baseline bytes/row  ratio"
    )
    for sync in ("full", "normal"):
        baseline: dict[str, Any] | None = None
        for burst in (False, True):
            data = tmp / f"f-{sync}-{int(burst)}"
            shutil.copytree(master, data)
            config = write_config(data, synchronous=sync, unlock=1)
            out = subprocess.run(
                [sys.executable, __file__, "--writes", str(config), "--events", str(events)]
                + (["--burst"] if burst else []),
                cwd=ROOT,
                env=child_env(),
                capture_output=True,
                text=True,
                check=True,
            )
            m = json.loads(out.stdout.strip().splitlines()[-1])
            if baseline is None:
                bl = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--sqlite",
                        str(tmp / f"bare-{sync}.db"),
                        "--sync",
                        sync,
                        "--events",
                        str(m["rows"]),
                        "--row-bytes",
                        str(int(m["row_bytes"])),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                baseline = json.loads(bl.stdout)
            total = m["write_bytes"] + m["checkpoint_bytes"]
            base_total = baseline["write_bytes"] + baseline["checkpoint_bytes"]
            per_event = total / m["rows"]
            per_row = base_total / m["rows"]
            print(
                f"    {sync:<12} {'burst' if burst else 'one by one':<10} {m['rows']:7d}"
                f"  {m['write_bytes'] / 1024:10.0f}  {m['write_bytes'] / 1024 / m['rows'] * 1000:10.0f}"
                f"  {m['checkpoint_bytes'] / 1024:14.0f}  {m['wchar'] / 1024:10.0f}"
                f"  {(m['wal_growth'] + m['db_growth']) / 1024:13.0f}  {per_event:11.0f}"
                f"  {per_row:18.0f}  {per_event / per_row:5.2f}"
            )
        print(
            f"    ({sync}: {m['granted']} of {events} decisions granted;"
            f" stored rows average {m['row_bytes']:.0f} bytes)"
        )


# --- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 people, 2,000 faces, 5 s idle, 200 events")
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--faces", type=int, default=20_000)
    ap.add_argument("--pack", default="opencv_yunet_sface")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle wall time for the CPU figure")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--face-seconds", type=float, default=6.0)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=2, help="cold starts per cache state")
    ap.add_argument(
        "--only", default="abcdef", help="parts to run: any of 'abcd' (the gateway runs), 'e', 'f'"
    )
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cold", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--writes", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--burst", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sqlite", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--sync", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--row-bytes", type=int, default=400, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold:
        cold_child(args.cold)
        return
    if args.writes:
        writes_child(args.writes, args.events, args.burst)
        return
    if args.sqlite:
        sqlite_child(args.sqlite, args.sync, args.events, args.row_bytes)
        return
    if args.prepare:
        prepare(args.prepare, args.people, args.faces, args.pack)
        return
    if args.quick:
        args.people, args.faces, args.idle, args.events, args.runs = 10_000, 2_000, 5.0, 200, 1
    with tempfile.TemporaryDirectory(prefix="menwei-footprint-") as name:
        tmp = Path(name)
        master = tmp / "master"
        t = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--prepare",
                str(master),
                "--people",
                str(args.people),
                "--faces",
                str(args.faces),
                "--pack",
                args.pack,
            ],
            cwd=ROOT,
            env=child_env(),
            check=True,
        )
        size = sum(p.stat().st_size for p in master.iterdir()) / 1e6
        print(
            f"data set: {args.people:,} people, {2 * args.people:,} cards, {args.people:,} passes,"
            f" {args.faces:,} enrolled faces ({args.pack}); {size:.0f} MB on disk, built in"
            f" {time.monotonic() - t:.0f} s"
        )
        if set("abcd") & set(args.only):
            run_gateways(master, tmp, args)
        if "e" in args.only:
            run_cold(master, tmp, args.runs)
        if "f" in args.only:
            run_writes(master, tmp, args.events, args.people)


if __name__ == "__main__":
    main()
