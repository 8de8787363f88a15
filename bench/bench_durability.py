"""What synchronous=full costs against normal, and what the data-lifecycle jobs cost, on this machine's disk.

Prints, for each mode: single-event commits per second (each append waited for, the worst case: one commit
per event) and events per second in group commits of 100, with the fsync/fdatasync calls per commit counted
by strace when it is available (the ratio normal/full is measured in the same run). Then, on a database of
`--events` events: the boot check (quick_check and integrity_check), an online backup and a retention run.

    .venv/bin/python bench/bench_durability.py [--events 100000] [--dir DIR]

Run it with --dir on the gateway's data card to get the card's numbers; the default is a temp dir.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.store.backup import check_database, take_backup
from edge.store.db import Synchronous
from edge.store.event_log import EventLog
from edge.store.retention import prune_synced_before

SINGLE = 500
GROUPED = 20_000
GROUP = 100


def _record(n: int, at: datetime | None = None) -> dict[str, object]:
    when = (at or datetime.now(UTC)).isoformat(timespec="microseconds")
    return {
        "type": "decision",
        "at": when,
        "door": f"door-{n % 4}",
        "granted": True,
        "person": f"p-{n % 997}",
    }


def child(kind: str, mode: Synchronous, path: str) -> None:
    """One measurement in this process (so strace counts only its syscalls); prints 'seconds count'."""
    with EventLog(path, synchronous=mode) as log:
        log.append(_record(0)).result()  # schema and connections ready before the clock starts
        t0 = time.perf_counter()
        if kind == "single":
            for n in range(SINGLE):
                log.append(_record(n)).result()
            count = SINGLE
        else:
            for start in range(0, GROUPED, GROUP):
                futures = log.append_many(_record(n) for n in range(start, start + GROUP))
                futures[-1].result()
            count = GROUPED
        print(f"{time.perf_counter() - t0:.6f} {count}")


def measure(kind: str, mode: str, directory: Path) -> tuple[float, int, int | None]:
    """(seconds, events, fsync-family calls or None) for one child run."""
    path = directory / f"{kind}-{mode}.db"
    cmd = [sys.executable, __file__, "--child", kind, mode, str(path)]
    syncs: int | None = None
    if shutil.which("strace"):
        trace = directory / f"{kind}-{mode}.strace"
        run = subprocess.run(
            ["strace", "-f", "-c", "-o", str(trace), "-e", "trace=fsync,fdatasync", *cmd],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode == 0:
            syncs = sum(
                int(line.split()[3])
                for line in trace.read_text().splitlines()
                if line.strip().endswith(("fsync", "fdatasync")) and len(line.split()) >= 5
            )
    else:
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:  # strace not permitted here: measure without it
        run = subprocess.run(cmd, capture_output=True, text=True, check=True)
        syncs = None
    seconds, events = run.stdout.split()
    return float(seconds), int(events), syncs


def lifecycle(directory: Path, events: int) -> None:
    path = directory / "big.db"
    old = datetime.now(UTC) - timedelta(days=400)
    with EventLog(path, synchronous="normal") as log:
        for start in range(0, events, 1000):
            futures = log.append_many(_record(n, old) for n in range(start, min(events, start + 1000)))
            futures[-1].result()
        log.mark_sent(range(1, events // 2 + 1))
    size = path.stat().st_size / 2**20
    print(f"\ndatabase of {events} events: {size:.1f} MiB")
    for full in (False, True):
        t0 = time.perf_counter()
        problem = check_database(path, full=full)
        name = "integrity_check" if full else "quick_check"
        print(f"  boot check {name:<15} {time.perf_counter() - t0:7.2f} s  ({problem or 'ok'})")
    t0 = time.perf_counter()
    take_backup(path, directory / "backups", keep=2)
    print(f"  online backup              {time.perf_counter() - t0:7.2f} s  (256 pages/step, 10 ms pauses)")
    t0 = time.perf_counter()
    result = prune_synced_before(path, datetime.now(UTC) - timedelta(days=365), batch_size=500)
    print(
        f"  retention of {result.pruned} events   {time.perf_counter() - t0:7.2f} s  "
        f"({result.batches} batches of 500, 50 ms pauses)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, mode, path = args.child
        child(kind, mode, path)
        return
    directory = Path(tempfile.mkdtemp(prefix="menwei-durability-", dir=args.dir))
    try:
        results: dict[tuple[str, str], tuple[float, int, int | None]] = {}
        print(f"directory {directory}")
        print(f"{'mode':<8}{'kind':<28}{'events/s':>10}{'fsyncs/commit':>15}")
        for mode in ("full", "normal"):
            for kind in ("single", "grouped"):
                seconds, events, syncs = measure(kind, mode, directory)
                results[(mode, kind)] = (seconds, events, syncs)
                commits = events if kind == "single" else events // GROUP
                per = "n/a" if syncs is None else f"{syncs / commits:.2f}"
                label = "1 event per commit" if kind == "single" else f"{GROUP} events per commit"
                print(f"{mode:<8}{label:<28}{events / seconds:>10.0f}{per:>15}")
        for kind in ("single", "grouped"):
            full = results[("full", kind)]
            normal = results[("normal", kind)]
            print(f"normal/full throughput, {kind}: {(normal[1] / normal[0]) / (full[1] / full[0]):.2f}x")
        lifecycle(directory, args.events)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
