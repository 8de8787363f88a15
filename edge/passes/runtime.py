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
never reorder and a burst of grants costs one write.
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
from edge.passes.uses import STATE_KEY as LEDGER_KEY
from edge.passes.uses import UseLedger, UseReport
from edge.passes.verify import REASONS, PassVerifier, fingerprint
from edge.passes.walkin import WalkInDesk
from edge.secrets import read_secret_bytes
from edge.store.codec import dt_to_text, text_to_dt
from edge.store.db import open_db, transaction
from edge.store.revocation_store import forget_revocations, load_revocations
from edge.store.state import get_state, put_state
from edge.store.trust_store import load_trusted_keys, save_trusted_keys

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], None]
Write = Callable[[sqlite_utils.Database], None]

HOUSEKEEPING_SECONDS = 60.0
# The persisted last-known-good time trails the one in memory by at most this much: a write every ten
# minutes rather than every minute, for the SD card's sake.
LKG_PERSIST_STEP = timedelta(minutes=10)
REVOCATIONS = "revocations"


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

    # --- life cycle ------------------------------------------------------------------------------------------

    async def start(
        self, pass_uses: dict[str, int], access_list: Callable[[], AccessList], stopping: asyncio.Event
    ) -> None:
        """Load the trust list, last-known-good time and use ledger; keep `pass_uses` (the totals the decision
        engine reads) in step with the ledger; start housekeeping until `stopping` is set."""
        keys, version, lkg, counts, revoked = await asyncio.to_thread(self._load)
        self.trust.load(keys, version)
        self.revoked = revoked
        self.clock_guard.last_known_good = self._persisted_lkg = lkg
        self.ledger = UseLedger(self.gateway_id, pass_uses, counts)
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
        request = AccessRequest(reader_id, CredentialKind.PASS, claims.pass_id, now)
        if claims.pass_id in self.revoked:  # pass_revoked is the engine's first check too
            return refuse(request, self.site, Reason.PASS_REVOKED, claims.pass_id)
        return engine.decide(request, mono, verified=claims.to_visitor_pass(self.skew))

    def note_use(self, decision: Decision) -> None:
        """After a granted pass decision: count it in the ledger and tell the site (PassUseEvent)."""
        if decision.pass_id is None:
            return
        report = self.ledger.record_local(decision.pass_id, decision.at)
        self.bus.publish(PassUseEvent(at=decision.at, report=report))
        self._mark(LEDGER_KEY)

    # --- what the cloud link feeds in -------------------------------------------------------------------------

    def merge_use(self, report: UseReport) -> bool:
        """A use report from a gateway of the site (or our own echo); idempotent. True if a total changed."""
        changed = self.ledger.merge(report)
        if changed:
            self._mark(LEDGER_KEY)
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

    def _expire_revocations(self) -> None:
        """Forget revocations of passes that have expired by the trusted (last-known-good) time, never by the
        wall clock alone: a clock set forward must not bring revoked passes back."""
        lkg = self.clock_guard.last_known_good
        if lkg is None:
            return
        stale = [pass_id for pass_id, until in self.revoked.items() if until + self.skew < lkg]
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
        except Exception:  # a task boundary: log it; the next change tries again
            log.exception("could not store visitor pass state")
        finally:
            self._flushing = False

    def _snapshot(self, what: str) -> Write:
        if what == LEDGER_KEY:
            ledger = self.ledger.to_state()
            return lambda db: put_state(db, LEDGER_KEY, ledger)
        if what == LKG_KEY:
            lkg = self.clock_guard.last_known_good
            assert lkg is not None
            text = dt_to_text(lkg)
            return lambda db: put_state(db, LKG_KEY, text)
        if what == REVOCATIONS:
            forgotten, cutoff = sorted(self._forgotten), self.clock_guard.last_known_good
            self._forgotten.clear()
            assert cutoff is not None
            before = cutoff - self.skew

            def forget(db: sqlite_utils.Database) -> None:
                forget_revocations(db, forgotten, before)

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

    def _load(
        self,
    ) -> tuple[list[TrustedKey], int, datetime | None, dict[str, dict[str, int]], dict[str, datetime]]:
        db = open_db(self.db_path, synchronous=self.config.store.synchronous)
        try:
            keys, version = load_trusted_keys(db)
            lkg_text = get_state(db, LKG_KEY)
            lkg = text_to_dt(lkg_text) if isinstance(lkg_text, str) else None
            counts = UseLedger.from_state(get_state(db, LEDGER_KEY, {}))
            return keys, version, lkg, counts, load_revocations(db)
        finally:
            db.close()
