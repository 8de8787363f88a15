"""The gateway's visitor-pass machinery in one object: trust list, clock guard, use ledger, walk-in desk.

Why a separate object: the gateway's hot path stays a few lines (`decide` for a scanned token, `note_use`
after a grant), and what the cloud link feeds in (cloud_sync.pass_sync, cloud_sync.downlink) has one obvious
place to arrive:

- `apply_trust_list(keys, version)` / `merge_key(key)`: trust-list updates and retirements from the cloud;
- `observe_server_time(t)`: server time from the authenticated cloud link, believed only within bounds
  (below), then `observe_trusted_time(t, mono, source)` like an NTP reading;
- `merge_use(report)`: "pass X used n times at gateway G", from the site's other gateways;
- PassUseEvent on the bus: this gateway's uses, which the cloud link publishes on its `passes/uses` topic;
- WalkInEvent in the event log: walk-in registrations, sent up by the uploader like any event;
- revocations: a pass the access list marks revoked is refused (edge.decision.evaluate); a revoked pass the
  access list does not hold (a signed QR pass) is on the revocation list, stored by the delta that revoked
  it (edge.store.revocation_store) and handed over with `revoke(...)`.

Server time is the cloud's clock in a snapshot, delta or trust-list message. It comes over the same
authenticated (TLS) link as the access list, so it is believed exactly as far as the access list is, and
within two bounds: it must agree with the gateway's own clock to within the pass clock skew (it confirms
the clock, never sets it: a retained or long-queued message carries an old time, which must not be taken for
now), and it must be later than the last-known-good time (only forward).

Nothing here touches the disk on the hot path. State that must survive a restart (the last-known-good time,
the use ledger, the trust list) is written from a single background flush, latest value wins, so writes
never reorder and a burst of grants costs one write. The use ledger is the one durable record of pass uses
(the decision engine's totals are derived from it at start): a use upserts only its (pass, gateway) row
(edge.store.use_store), so the write does not grow with the ledger, and housekeeping forgets the counts of
passes that can never be used again (UseLedger.expired), so the ledger does not grow for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from edge.clock import Clock
from edge.config import GatewayConfig
from edge.decision import AccessRequest, Decision, DecisionEngine, Reason, refuse
from edge.events import EventBus
from edge.model import AccessList, CredentialKind, Site
from edge.passes.clock_guard import STATE_KEY as LKG_KEY
from edge.passes.clock_guard import ClockGuard, kernel_ntp_synchronized
from edge.passes.errors import PassError
from edge.passes.events import PassUseEvent
from edge.passes.issue import PassSigner
from edge.passes.trust import TrustedKey, TrustList
from edge.passes.uses import LedgerChanges, Row, UseLedger, UseReport
from edge.passes.verify import REASONS, PassVerifier, fingerprint
from edge.passes.walkin import WalkInDesk
from edge.secrets import read_secret_bytes
from edge.store.codec import dt_to_text, text_to_dt
from edge.store.db import open_db, transaction
from edge.store.revocation_store import forget_revocations, load_revocations
from edge.store.state import get_state, put_state
from edge.store.trust_store import load_trusted_keys, save_trusted_keys
from edge.store.use_store import load_legacy, load_use_rows, move_legacy, save_use_rows

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], None]
Write = Callable[[sqlite_utils.Database], None]

HOUSEKEEPING_SECONDS = 60.0
# The persisted last-known-good time trails the one in memory by at most this much: a write every ten
# minutes rather than every minute, for the SD card's sake.
LKG_PERSIST_STEP = timedelta(minutes=10)
REVOCATIONS = "revocations"
LEDGER = "ledger"


class PassRuntime:
    def __init__(
        self,
        config: GatewayConfig,
        site: Site,
        bus: EventBus,
        clock: Clock,
        db_path: Path,
        spawn: Spawn,
        *,
        ntp_probe: Callable[[], bool | None] = kernel_ntp_synchronized,
    ) -> None:
        self.config = config
        self.site = site
        self.bus = bus
        self.clock = clock
        self.db_path = db_path
        self.spawn = spawn
        self.ntp_probe = ntp_probe
        self.gateway_id = config.gateway.id
        self.skew = timedelta(seconds=config.passes.clock_skew_seconds)
        self.trust = TrustList()
        self.clock_guard = ClockGuard(self.skew)
        self.verifier = PassVerifier(site.id, self.trust, self.clock_guard)
        self.ledger = UseLedger(self.gateway_id, {})
        self.walk_in: WalkInDesk | None = None
        self._signer: PassSigner | None = None
        key = read_secret_bytes(config.passes.walkin_key, required=False, length=32)
        if key is not None:
            self._signer = PassSigner.from_private_bytes(
                key.get_secret_value(), issuer=f"gateway:{self.gateway_id}"
            )
        self.revoked: dict[str, datetime] = {}  # revoked passes the access list does not hold -> forget after
        self._forgotten: set[str] = set()  # revocations dropped from memory, to be dropped from the store
        self._dirty: set[str] = set()
        self._flushing = False
        self._persisted_lkg: datetime | None = None
        self._access_list: Callable[[], AccessList] | None = None
        self._verified: tuple[str, datetime] | None = None  # the last verified token's (pass id, expiry)
        self._ledger_in_flight: LedgerChanges | None = None
        self.rows_written = 0  # use-count rows changed by this runtime's writes (tests, bench)

    # --- life cycle ------------------------------------------------------------------------------------------

    async def start(
        self, pass_uses: dict[str, int], access_list: Callable[[], AccessList], stopping: asyncio.Event
    ) -> None:
        """Load the trust list, last-known-good time and use ledger; keep `pass_uses` (the totals the decision
        engine reads) in step with the ledger; start housekeeping until `stopping` is set."""
        keys, version, lkg, rows, legacy, revoked = await asyncio.to_thread(self._load)
        self.trust.load(keys, version)
        self.revoked = revoked
        self.clock_guard.last_known_good = self._persisted_lkg = lkg
        self._access_list = access_list
        await self._load_ledger(pass_uses, rows, legacy)
        if self._signer is not None:
            self.trust.add_local(self._signer.trusted_key())
            self.walk_in = WalkInDesk(
                site=self.site,
                gateway_id=self.gateway_id,
                settings=self.config.passes,
                signer=self._signer,
                bus=self.bus,
                clock=self.clock,
                clock_guard=self.clock_guard,
                access_list=access_list,
            )
        log.info(
            "visitor passes: %d trusted keys (version %d), %d revoked, walk-in %s, last-known-good time %s",
            len(self.trust),
            version,
            len(self.revoked),
            "on" if self.walk_in else "off (no key)",
            lkg.isoformat() if lkg else "none",
        )
        self._tick()
        self.spawn(self._housekeeping(stopping))

    # --- the hot path ----------------------------------------------------------------------------------------

    def decide(
        self, engine: DecisionEngine, reader_id: str, token: str, now: datetime, mono: float
    ) -> Decision:
        """Verify a scanned token and decide it. A token that cannot be trusted is refused with its reason and
        recorded by its pass id only if the signature verified, else by a fingerprint; never the token."""
        try:
            verified = self.verifier.verify(token, now, mono)
        except PassError as err:
            log.debug("pass refused at %s: %s", reader_id, err)
            request = AccessRequest(reader_id, CredentialKind.PASS, err.pass_id or fingerprint(token), now)
            return refuse(request, self.site, REASONS[err.reason], err.pass_id)
        claims = verified.claims
        self._verified = (claims.pass_id, claims.expires)
        if self.ledger.learn_expiry(claims.pass_id, claims.expires):  # counts known only from peers so far
            self._mark(LEDGER)
        request = AccessRequest(reader_id, CredentialKind.PASS, claims.pass_id, now)
        if claims.pass_id in self.revoked:  # pass_revoked is the engine's first check too
            return refuse(request, self.site, Reason.PASS_REVOKED, claims.pass_id)
        return engine.decide(request, mono, verified=claims.to_visitor_pass(self.skew))

    def note_use(self, decision: Decision) -> None:
        """After a granted pass decision: count it in the ledger and tell the site (PassUseEvent)."""
        pass_id = decision.pass_id
        if pass_id is None:
            return
        expires: datetime | None = None
        if self._verified is not None and self._verified[0] == pass_id:  # a token: its signed expiry
            expires = self._verified[1]
        elif self._access_list is not None and (held := self._access_list().passes.get(pass_id)) is not None:
            expires = held.valid_until  # presented by id: the access list's window
        seen = self.clock_guard.last_known_good
        report = self.ledger.record_local(pass_id, decision.at, expires=expires, seen=seen)
        self.bus.publish(PassUseEvent(at=decision.at, report=report))
        self._mark(LEDGER)

    # --- what the cloud link feeds in -------------------------------------------------------------------------

    def merge_use(self, report: UseReport) -> bool:
        """A use report from a gateway of the site (or our own echo); idempotent. True if a total changed."""
        changed = self.ledger.merge(report, seen=self.clock_guard.last_known_good)
        if changed:
            self._mark(LEDGER)
        return changed

    def observe_trusted_time(self, t: datetime, mono: float, source: str) -> None:
        if self.clock_guard.observe_trusted_time(t, mono, source):
            self._mark_lkg()

    def observe_server_time(self, t: datetime, source: str = "server") -> bool:
        """Server time from the authenticated cloud link (module docstring): a trusted reading if it is within
        the skew of our own clock and later than the last-known-good time. True if it was taken."""
        now, mono = self.clock.now(), self.clock.monotonic()
        if abs(t - now) > self.skew:
            log.debug("server time %s differs from ours (%s) by more than the skew: not used", t, now)
            return False
        lkg = self.clock_guard.last_known_good
        if lkg is not None and t <= lkg:
            return False
        self.observe_trusted_time(t, mono, source)
        return True

    def revoke(self, revocations: Mapping[str, datetime]) -> None:
        """Revoked passes the access list does not hold, already stored (in the delta's transaction): from now
        on a scan of their token is refused with pass_revoked."""
        for pass_id, forget_after in revocations.items():
            known = self.revoked.get(pass_id)
            self.revoked[pass_id] = forget_after if known is None else max(known, forget_after)
            self._forgotten.discard(pass_id)
        if revocations:
            log.info("visitor passes revoked by id: %s", ", ".join(sorted(revocations)[:20]))

    def local_counts(self, limit: int) -> list[tuple[str, int]]:
        """(pass id, uses counted here) for the `limit` passes this ledger learnt of last that were used here:
        what to announce again after a reconnect, in case a report was lost while the link was down."""
        return self.ledger.local_counts(limit)

    def apply_trust_list(self, keys: Iterable[TrustedKey], version: int) -> None:
        """A full trust list from the cloud (see trust.py for the rules). Raises PassError(TRUST_CONFLICT)
        without changing anything if it would change a key's bytes."""
        self.trust.replace(keys, version, self.clock.now())
        self._re_add_local()
        self._mark("trust")

    def merge_key(self, key: TrustedKey) -> TrustedKey:
        merged = self.trust.merge(key, self.clock.now())
        self._mark("trust")
        return merged

    async def settled(self) -> None:
        """Return once everything marked so far is written (tests, benches, a clean stop)."""
        while self._flushing or self._dirty:
            if not self._flushing:  # marked while no flush runs (a write failed before): start one
                self._mark(next(iter(self._dirty)))
            await asyncio.sleep(0.005)

    # --- internals -------------------------------------------------------------------------------------------

    def _re_add_local(self) -> None:
        if self._signer is not None:
            self.trust.add_local(self._signer.trusted_key())

    async def _housekeeping(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), HOUSEKEEPING_SECONDS)
            self._tick()

    def _tick(self) -> None:
        """Take a trusted reading from NTP if the kernel says it is synchronised; else carry LKG forward."""
        mono = self.clock.monotonic()
        if self.ntp_probe():
            self.clock_guard.observe_trusted_time(self.clock.now(), mono, "ntp")
        else:
            self.clock_guard.checkpoint(mono)
        self._mark_lkg()
        self._expire_revocations()
        self._expire_uses()

    def _expire_uses(self) -> None:
        """Forget the counts of passes that can never be used again, judged by the last-known-good time, never
        by the wall clock (UseLedger.expired has the argument). Passes the access list holds are kept: they
        are presented by id, which the clock guard does not gate."""
        lkg = self.clock_guard.last_known_good
        if lkg is None:
            return
        held = self._access_list().passes.keys() if self._access_list is not None else ()
        stale = self.ledger.expired(lkg, self.skew, held)
        if stale:
            self.ledger.forget(stale)
            log.info("visitor passes: counts of %d expired passes forgotten", len(stale))
        if self.ledger.has_changes:
            self._mark(LEDGER)

    def _expire_revocations(self) -> None:
        """Forget revocations of passes that have expired by the trusted (last-known-good) time, never by the
        wall clock alone: a clock set forward must not bring revoked passes back. The margin is two skews, as
        for use counts (UseLedger.expired): a pass verifies until its expiry plus one skew, and the clock guard
        still trusts a wall clock set back by up to one skew from the last-known-good time, so with one skew a
        clock set back a little would make a revoked pass good again."""
        lkg = self.clock_guard.last_known_good
        if lkg is None:
            return
        margin = 2 * self.skew
        stale = [pass_id for pass_id, until in self.revoked.items() if until + margin <= lkg]
        if stale:
            for pass_id in stale:
                del self.revoked[pass_id]
            self._forgotten.update(stale)
            self._mark(REVOCATIONS)

    def _mark_lkg(self) -> None:
        lkg = self.clock_guard.last_known_good
        if lkg is not None and (self._persisted_lkg is None or lkg - self._persisted_lkg >= LKG_PERSIST_STEP):
            self._persisted_lkg = lkg
            self._mark(LKG_KEY)

    def _mark(self, what: str) -> None:
        self._dirty.add(what)
        if not self._flushing:
            self._flushing = True
            self.spawn(self._flush())

    async def _flush(self) -> None:
        try:
            while self._dirty:
                writes = [self._snapshot(what) for what in sorted(self._dirty)]  # taken on the loop
                self._dirty.clear()
                await asyncio.to_thread(self._write, writes)
                self._ledger_in_flight = None
        except Exception:  # a task boundary: log it; the next change tries again
            log.exception("could not store visitor pass state")
            if self._ledger_in_flight is not None:  # those rows are written again with the next flush
                self.ledger.give_back(self._ledger_in_flight)
                self._ledger_in_flight = None
                self._dirty.add(LEDGER)
        finally:
            self._flushing = False

    def _snapshot(self, what: str) -> Write:
        if what == LEDGER:
            changes = self._ledger_in_flight = self.ledger.take_changes()
            lkg_text: str | None = None
            if (
                changes.forgotten
            ):  # judged by this LKG: stored with it, so a restart never loads an earlier one
                lkg = self.clock_guard.last_known_good
                assert lkg is not None
                lkg_text, self._persisted_lkg = dt_to_text(lkg), lkg

            def save_uses(db: sqlite_utils.Database) -> None:
                self.rows_written += save_use_rows(db, changes.rows, changes.forgotten)
                if lkg_text is not None:
                    put_state(db, LKG_KEY, lkg_text)

            return save_uses
        if what == LKG_KEY:
            lkg = self.clock_guard.last_known_good
            assert lkg is not None
            text = dt_to_text(lkg)
            return lambda db: put_state(db, LKG_KEY, text)
        if what == REVOCATIONS:
            forgotten, cutoff = sorted(self._forgotten), self.clock_guard.last_known_good
            self._forgotten.clear()
            assert cutoff is not None
            # forget_after < before, i.e. valid_until + 2 skews <= LKG, like the check above. Judged by this
            # LKG, so it is stored with the deletion: a restart never loads an earlier one.
            before = cutoff - 2 * self.skew + timedelta(seconds=1)
            cutoff_text, self._persisted_lkg = dt_to_text(cutoff), cutoff

            def forget(db: sqlite_utils.Database) -> None:
                forget_revocations(db, forgotten, before)
                put_state(db, LKG_KEY, cutoff_text)

            return forget
        keys, version = self.trust.keys(), self.trust.version
        return lambda db: save_trusted_keys(db, keys, version)

    def _write(self, writes: list[Write]) -> None:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            with transaction(db):
                for write in writes:
                    write(db)
        finally:
            db.close()

    async def _load_ledger(
        self,
        totals: dict[str, int],
        rows: list[Row],
        legacy: tuple[dict[str, dict[str, int]], dict[str, int]] | None,
    ) -> None:
        """The ledger from its rows; a JSON ledger stored before migration 9 is merged in and moved to rows
        (its keys deleted in the same transaction). `totals` is the engine's dict, filled from the ledger."""
        if (
            legacy is not None
        ):  # the old totals: uses beyond the ledger's sum are this gateway's (constructor)
            for pass_id, total in legacy[1].items():
                totals[pass_id] = max(totals.get(pass_id, 0), total)
        self.ledger = UseLedger.from_rows(self.gateway_id, totals, rows, legacy[0] if legacy else None)
        if legacy is None:
            return
        lkg = self.clock_guard.last_known_good
        if lkg is not None:  # stamp the last-seen time now (start's first tick forgets), not in a 2nd write
            self.ledger.expired(lkg, self.skew)
        self.ledger.take_changes()  # all of it is written now
        moved = self.ledger.rows()
        await asyncio.to_thread(self._move_legacy, moved)
        log.info(
            "visitor passes: %d use counts moved from the JSON state to table pass_use_counts", len(moved)
        )

    def _move_legacy(self, rows: list[Row]) -> None:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            self.rows_written += move_legacy(db, rows)
        finally:
            db.close()

    def _load(
        self,
    ) -> tuple[
        list[TrustedKey],
        int,
        datetime | None,
        list[Row],
        tuple[dict[str, dict[str, int]], dict[str, int]] | None,
        dict[str, datetime],
    ]:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            keys, version = load_trusted_keys(db)
            lkg_text = get_state(db, LKG_KEY)
            lkg = text_to_dt(lkg_text) if isinstance(lkg_text, str) else None
            return keys, version, lkg, load_use_rows(db), load_legacy(db), load_revocations(db)
        finally:
            db.close()
