"""Crash safety: SIGKILL a child process in the middle of heavy writes, many times, and check what survived.

The event log: every event whose id the child printed (it prints only after the append future resolved,
i.e. after the commit) must be in the database, seqs must run 1..n without a gap, the chain must verify and
SQLite's integrity check must pass. The access list: a replace killed half way through must leave the
previous version whole (or, if the kill came after the commit, the new one whole), never a mix.

Nothing here is timed: the kill moments are random, and the checks hold wherever the kill lands. Set
MENWEI_CRASH_SEED to replay a failing run's kill moments (the seed is in every assertion message).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.store import access_list_version, load_access_list, open_db, verify_chain

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
EVENT_ROUNDS = 20
SEED = int(os.environ.get("MENWEI_CRASH_SEED", "0")) or random.SystemRandom().randrange(1, 1_000_000)


class Child:
    """A child Python process whose complete stdout lines are collected by a thread."""

    def __init__(self, script: str, *args: str, log_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.stderr_path = log_dir / f"{script}.{time.monotonic_ns()}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if raw.endswith(b"\n"):  # a line cut short by the kill was never fully reported
                with self._changed:
                    self.lines.append(raw.decode().rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    self.kill()
                    pytest.fail(f"child did not get there; stderr:\n{self.stderr_path.read_text()}")
                self._changed.wait(min(left, 0.5))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join()
        self._stderr.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_event_log_keeps_every_confirmed_event_through_repeated_sigkills(
    tmp_path: Path, synchronous: str
) -> None:
    # Both modes: a SIGKILL ends the process, not the OS, so every committed WAL frame is still in the page
    # cache and reaches the file. (synchronous only matters when the OS or the power goes too.)
    rng = random.Random(SEED)
    path = tmp_path / "events.db"
    confirmed: set[str] = set()
    for round_no in range(EVENT_ROUNDS):
        child = Child("store_crash_child_events.py", str(path), synchronous, log_dir=tmp_path)
        child.wait_for(lambda lines: len(lines) > 0)
        time.sleep(rng.uniform(0.02, 0.3))  # let it write hard for a random while, then pull the plug
        child.kill()
        assert child.proc.returncode == -signal.SIGKILL, child.stderr_path.read_text()
        this_round = child.lines
        confirmed.update(this_round)

        where = f"(round {round_no}, synchronous {synchronous}, seed {SEED})"
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", where
            seq_of = dict(conn.execute("SELECT id, seq FROM events"))
            seqs = [s for (s,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
            counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()[0]
        finally:
            conn.close()
        missing = confirmed - seq_of.keys()
        assert not missing, f"{len(missing)} confirmed events lost {where}"
        assert seqs == list(range(1, len(seqs) + 1)), where
        assert counter == len(seqs), where  # no number was burnt either
        printed = [seq_of[i] for i in this_round]
        assert printed == sorted(printed), where  # confirmations arrived in seq order
        report = verify_chain(path)
        assert report.ok, f"{report.detail} {where}"
        assert report.checked == len(seqs)
    assert len(confirmed) >= EVENT_ROUNDS


@dataclass
class AclRound:
    possible: set[int]  # versions the database may hold afterwards
    interrupted: int | None  # the version whose save the kill cut short, if any
    ticks: int = 0  # from the last completed save: progress ticks inside its transaction


def _acl_round(
    path: Path,
    mode: str,
    halfway: int,
    known: dict[int, tuple[int, int, int]],
    rng: random.Random,
    log_dir: Path,
) -> AclRound:
    result = AclRound({_version_of(path)}, None)
    child = Child("store_crash_child_acl.py", str(path), mode, str(halfway), log_dir=log_dir)
    if mode == "seed":
        child.wait_for(lambda lines: any(line.startswith("saved") for line in lines))
        child.proc.wait()
    else:
        child.wait_for(lambda lines: "inside" in lines)
        if mode == "run":
            time.sleep(rng.uniform(0.0, 0.4))
    child.kill()

    for line in child.lines:
        word, *numbers = line.split()
        if word == "saving":
            version, people, cards, passes = (int(n) for n in numbers)
            known[version] = (people, cards, passes)
            result.possible.add(version)
            result.interrupted = version
        elif word == "saved":
            result.possible = {int(numbers[0])}
            result.interrupted = None
            result.ticks = int(numbers[1])
    return result


def _version_of(path: Path) -> int:
    if not path.exists():
        return 0
    db = open_db(path)
    try:
        return access_list_version(db)
    finally:
        db.close()


@pytest.mark.slow
def test_access_list_replace_killed_midway_leaves_one_whole_version(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    path = tmp_path / "acl.db"
    known: dict[int, tuple[int, int, int]] = {}
    seeded = _acl_round(path, "seed", 0, known, rng, tmp_path)
    assert seeded.possible == {1}
    halfway = seeded.ticks // 2
    assert halfway > 10

    kept_old = 0
    for round_no, mode in enumerate(["pause", "run", "pause", "run", "run", "pause"]):
        before = _version_of(path)
        result = _acl_round(path, mode, halfway, known, rng, tmp_path)
        where = f"(round {round_no}, {mode}, seed {SEED})"

        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", where
        finally:
            conn.close()
        db = open_db(path)
        try:
            acl = load_access_list(db)
        finally:
            db.close()
        assert acl.version in result.possible, where
        people, cards, passes = known[acl.version]
        counts = acl.counts()
        assert (counts["people"], counts["credentials"], counts["passes"]) == (people, cards, passes), where
        tag = f"v{acl.version}-"
        assert all(p.name.startswith(tag) for p in acl.people.values()), where
        assert all(v.label.startswith(tag) for v in acl.passes.values()), where
        assert all(g.name.startswith(tag) for g in acl.groups.values()), where
        if mode == "pause":
            # Killed while its transaction was open and half written: the old version is what is left.
            assert result.interrupted == before + 1, where
            assert acl.version == before, where
        if result.interrupted is not None and acl.version != result.interrupted:
            kept_old += 1
    assert kept_old >= 3  # at least the three paused rounds
