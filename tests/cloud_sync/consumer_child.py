"""One backend consumer process for test_shared_consumers.py: an EventConsumer in a shared subscription group,
deduplicating through the SQLite file every member shares.

The handler does what a real backend handler does with the store's connection: it writes its result (a row
in `handled`) inside the dedupe transaction. It also appends each call to its own log file, so the test can
count handler calls independently of any database. Prints "ready" once subscribed; on "stop" from stdin it
stops and prints its stats as one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from cloud_sync.dedupe import DedupeStore, ReceivedEvent
from cloud_sync.kit import Connection, EventConsumer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--db", required=True, help="the shared dedupe store")
    parser.add_argument("--calls", required=True, help="this process's log of handler calls")
    args = parser.parse_args(argv)

    with open(args.calls, "a", encoding="utf-8") as calls, DedupeStore(args.db) as store:

        def handle(ev: ReceivedEvent) -> None:
            ev.db.execute(
                "INSERT INTO handled (site, gateway, seq, consumer) VALUES (?, ?, ?, ?)",
                (ev.site, ev.gateway, ev.seq, args.client_id),
            )
            calls.write(json.dumps([ev.gateway, ev.seq]) + "\n")
            calls.flush()

        consumer = EventConsumer(
            Connection(args.host, args.port),
            args.site,
            handle,
            dedupe=store,
            group=args.group,
            client_id=args.client_id,
        )
        with consumer:
            print("ready", flush=True)
            for line in sys.stdin:
                if line.strip() == "stop":
                    break
        print(json.dumps(dataclasses.asdict(consumer.stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
