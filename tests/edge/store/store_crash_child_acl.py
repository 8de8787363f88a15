"""Child process for the access list crash test: replace a big access list, version after version.

Usage: python store_crash_child_acl.py DB_PATH MODE [HALFWAY]

It prints `saving V PEOPLE CREDENTIALS PASSES` before each save and `saved V TICKS` after it commits, where
TICKS counts SQLite progress-handler calls made inside the save's transaction. Every name in version V
starts with "vV-", so a mix of two versions would be visible. MODE:
- seed: save one version and exit.
- pause: start the next save; when HALFWAY ticks have passed inside its transaction, print `inside` and
  sleep, so the parent kills it with the transaction certainly open and half written.
- run: save versions back to back (printing `inside` at HALFWAY); the parent kills it whenever it likes.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import sqlite_utils

from edge.model import AccessList, AccessRule, Credential, CredentialKind, Group, Person, VisitorPass
from edge.store import access_list_version, open_db, save_access_list

TICK = 10_000  # SQLite VM instructions per progress-handler call


def sizes(version: int) -> tuple[int, int, int]:
    people = 12_000 + 2_000 * (version % 3)
    return people, 2 * people, people // 2


def build(version: int) -> AccessList:
    people, cards, passes = sizes(version)
    tag = f"v{version}-"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return AccessList.build(
        version=version,
        groups=[Group(f"g{i}", f"{tag}group") for i in range(10)],
        rules=[AccessRule(f"r{i}", f"g{i}", (f"d{i}",)) for i in range(10)],
        people=[Person(f"p{i}", f"{tag}person {i}", group_ids=(f"g{i % 10}",)) for i in range(people)],
        credentials=[Credential(CredentialKind.CARD, f"{i}", f"p{i % people}") for i in range(cards)],
        passes=[
            VisitorPass(f"x{i}", ("d1",), t0, t0 + timedelta(hours=1), label=f"{tag}visitor")
            for i in range(passes)
        ],
    )


class Ticker:
    def __init__(self, db: sqlite_utils.Database, halfway: int, pause: bool) -> None:
        self.db = db
        self.halfway = halfway
        self.pause = pause
        self.ticks = 0

    def __call__(self) -> int:
        if self.db.conn.in_transaction:
            self.ticks += 1
            if self.ticks == self.halfway:
                print("inside", flush=True)
                if self.pause:
                    time.sleep(60)
        return 0


def main(path: str, mode: str, halfway: int) -> None:
    db = open_db(path)
    ticker = Ticker(db, halfway, pause=mode == "pause")
    db.conn.set_progress_handler(ticker, TICK)
    version = access_list_version(db)
    while True:
        version += 1
        acl = build(version)
        ticker.ticks = 0
        print("saving", version, *sizes(version), flush=True)
        save_access_list(db, acl)
        print("saved", version, ticker.ticks, flush=True)
        if mode == "seed":
            return


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
