"""Child process for the event log crash test: append as fast as possible, print each id once it is stored.

Usage: python store_crash_child_events.py DB_PATH [full|normal]

An id is written to stdout (and flushed) only after its append future has resolved, i.e. after the commit;
the parent SIGKILLs this process at a random moment and then checks that every printed id is in the database.
"""

from __future__ import annotations

import sys
from collections import deque
from concurrent.futures import Future
from datetime import UTC, datetime

from edge.store.db import Synchronous
from edge.store.event_log import EventLog, StoredEvent

IN_FLIGHT = 300


def main(path: str, synchronous: Synchronous = "full") -> None:
    log = EventLog(path, synchronous=synchronous)
    window: deque[Future[StoredEvent]] = deque()
    out = sys.stdout
    n = 0
    while True:
        while len(window) < IN_FLIGHT:
            record = {
                "type": "decision",
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "door": f"door-{n % 4}",
                "n": n,
                "note": "x" * (n % 97),
            }
            window.append(log.append(record))
            n += 1
        out.write(window.popleft().result().id + "\n")  # wait for the oldest ...
        while window and window[0].done():  # ... and report everything else already stored
            out.write(window.popleft().result().id + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], "normal" if sys.argv[2:] == ["normal"] else "full")
