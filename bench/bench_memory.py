"""Memory of the in-memory access list: RSS before and after loading 100,000 people / 200,000 cards /
100,000 passes from SQLite in a fresh process (what a gateway holds at steady state), against the RSS of the
same process with the code imported but no list loaded (the baseline, measured in the same run).

    .venv/bin/python bench/bench_memory.py [--people 100000]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(db: Path) -> None:
    from edge.store.access_store import load_access_list
    from edge.store.db import open_db

    gc.collect()
    base = rss_mb()
    conn = open_db(db)
    acl = load_access_list(conn)
    conn.close()
    gc.collect()
    loaded = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = acl.counts()
    print(
        f"access list loaded: {counts['people']:,} people, {counts['credentials']:,} credentials, "
        f"{counts['passes']:,} passes"
    )
    print(f"RSS, code imported, nothing loaded (baseline): {base:7.1f} MB")
    print(f"RSS, access list in memory (steady state):     {loaded:7.1f} MB  (+{loaded - base:.1f} MB)")
    print(f"peak RSS while loading:                        {peak:7.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--child", type=Path)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic import big_access_list

    from edge.store.access_store import save_access_list
    from edge.store.db import open_db

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "menwei.db"
        conn = open_db(db)
        save_access_list(conn, big_access_list(args.people, ["a", "b", "c"], datetime.now(UTC)))
        conn.close()
        subprocess.run([sys.executable, __file__, "--child", str(db)], check=True)


if __name__ == "__main__":
    main()
