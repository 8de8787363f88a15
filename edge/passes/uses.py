"""Visitor pass use counts, kept so that gateways of one site can share them: a grow-only counter per pass.

Why this shape: a one-time pass used at gate A must be refused at gate B. Each gateway counts its own uses of
a pass and tells the others "gateway G has counted n uses of pass X (the last at T)" (a UseReport). Merging
keeps, per (pass, gateway), the largest count seen, and a pass's total is the sum over gateways. Taking the
maximum makes a merge idempotent and order-free: a report delivered twice, late, or after a newer one changes
nothing, so the reports can travel over an at-least-once channel (MQTT QoS 1) without bookkeeping.

The totals live in the dict the decision engine reads (GatewayState.pass_uses); this ledger keeps them equal
to the per-gateway sums. Uses counted before the ledger existed are attributed to this gateway.

Stored as one row per (pass, gateway) (table pass_use_counts, edge.store.use_store): the ledger remembers
which rows changed since they were last taken (`take_changes`), so a use rewrites one row, not the ledger.

Bounded: a pass's counts are forgotten once the pass can never be used again (`expired`). See `expired` for
why that is judged by the last-known-good time and why the margin is twice the clock skew.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

STATE_KEY = "pass_use_ledger"  # the JSON ledger before migration 9; read once, moved to rows, deleted
TOTALS_KEY = "pass_uses"  # the JSON totals written by the gateway before migration 9; same
# How long counts whose pass expiry this gateway never learnt (only peers' reports, or uses stored before
# expiries were kept) are kept after the last use this gateway learnt of: the revocation list's bound for a
# revocation without valid_until. Longer than any pass the cloud issues.
KEEP_UNKNOWN = timedelta(days=400)

Row = tuple[str, str, int, datetime | None, datetime | None]  # pass, gateway, count, last seen, expires


@dataclass(frozen=True, slots=True)
class UseReport:
    """Gateway `gateway_id` has counted `count` uses of pass `pass_id`, the last at `at`."""

    pass_id: str
    gateway_id: str
    count: int
    at: datetime


@dataclass(frozen=True, slots=True)
class LedgerChanges:
    """What changed since the last `take_changes`: passes whose rows to delete (first), rows to upsert (then:
    a pass forgotten and counted again before the write keeps only its new rows)."""

    rows: list[Row]
    forgotten: list[str]

    def __bool__(self) -> bool:
        return bool(self.rows or self.forgotten)


class UseLedger:
    def __init__(
        self,
        gateway_id: str,
        totals: dict[str, int],
        counts: Mapping[str, Mapping[str, int]] | None = None,
        *,
        expires: Mapping[str, datetime] | None = None,
        seen: Mapping[str, datetime] | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.totals = totals
        self._counts: dict[str, dict[str, int]] = {p: dict(c) for p, c in (counts or {}).items()}
        # The pass's expiry (the token's exp, or the access list's valid_until), where this gateway learnt it.
        self._expires: dict[str, datetime] = dict(expires or {})
        # The last-known-good time when this gateway last learnt of a use (None: not yet stamped).
        self._seen: dict[str, datetime] = dict(seen or {})
        self._dirty: set[tuple[str, str]] = set()
        self._forgotten: set[str] = set()
        for pass_id, total in list(totals.items()):
            known = sum(self._counts.get(pass_id, {}).values())
            if total > known:
                mine = self._counts.setdefault(pass_id, {})
                mine[gateway_id] = mine.get(gateway_id, 0) + total - known
                self._dirty.add((pass_id, gateway_id))
        for pass_id in self._counts:
            self._sum(pass_id)

    @classmethod
    def from_rows(
        cls,
        gateway_id: str,
        totals: dict[str, int],
        rows: Iterable[Row],
        legacy: Mapping[str, Mapping[str, int]] | None = None,
    ) -> UseLedger:
        """The ledger from stored rows, merged with a JSON ledger of before migration 9 (`legacy`); `totals`
        larger than the counts are reconciled as in the constructor."""
        counts: dict[str, dict[str, int]] = {p: dict(c) for p, c in (legacy or {}).items()}
        expires: dict[str, datetime] = {}
        seen: dict[str, datetime] = {}
        for pass_id, gw, count, last, exp in rows:
            mine = counts.setdefault(pass_id, {})
            mine[gw] = max(mine.get(gw, 0), count)
            if exp is not None and (pass_id not in expires or exp > expires[pass_id]):
                expires[pass_id] = exp
            if last is not None and (pass_id not in seen or last > seen[pass_id]):
                seen[pass_id] = last
        return cls(gateway_id, totals, counts, expires=expires, seen=seen)

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def has_changes(self) -> bool:
        return bool(self._dirty or self._forgotten)

    def record_local(
        self, pass_id: str, at: datetime, *, expires: datetime | None = None, seen: datetime | None = None
    ) -> UseReport:
        """Count one use here (after a grant); the report to tell the site's other gateways."""
        mine = self._counts.setdefault(pass_id, {})
        mine[self.gateway_id] = mine.get(self.gateway_id, 0) + 1
        self._sum(pass_id)
        self._note(pass_id, expires, seen)
        self._dirty.add((pass_id, self.gateway_id))
        return UseReport(pass_id, self.gateway_id, mine[self.gateway_id], at)

    def merge(self, report: UseReport, *, seen: datetime | None = None) -> bool:
        """Take in a report from any gateway (our own echo included). True if a total changed."""
        if report.count < 0:
            raise ValueError("a use count is never negative")
        counts = self._counts.setdefault(report.pass_id, {})
        if report.count <= counts.get(report.gateway_id, 0):
            if not counts:
                del self._counts[report.pass_id]
            return False
        counts[report.gateway_id] = report.count
        self._sum(report.pass_id)
        self._note(report.pass_id, None, seen)
        self._dirty.add((report.pass_id, report.gateway_id))
        return True

    def learn_expiry(self, pass_id: str, expires: datetime) -> bool:
        """The pass's expiry, learnt from a verified token: kept for a pass the ledger counts (so counts learnt
        only from peers can be forgotten on time). True if that changed what is stored."""
        if pass_id not in self._counts:
            return False
        known = self._expires.get(pass_id)
        if known is not None and known >= expires:
            return False
        self._expires[pass_id] = expires
        self._dirty.update((pass_id, gw) for gw in self._counts[pass_id])
        return True

    def total(self, pass_id: str) -> int:
        return self.totals.get(pass_id, 0)

    def counts(self, pass_id: str) -> dict[str, int]:
        return dict(self._counts.get(pass_id, {}))

    def expiry(self, pass_id: str) -> datetime | None:
        return self._expires.get(pass_id)

    def local_counts(self, limit: int) -> list[tuple[str, int]]:
        """(pass, this gateway's count) of the last `limit` passes, in the order the ledger learnt of them,
        that were used here."""
        mine = [(p, c[self.gateway_id]) for p, c in self._counts.items() if c.get(self.gateway_id, 0) > 0]
        return mine[-limit:] if limit > 0 else []

    def expired(self, lkg: datetime, skew: timedelta, keep: Iterable[str] = ()) -> list[str]:
        """Passes whose counts can be forgotten at the last-known-good time `lkg` (not forgotten yet; `keep`:
        ids never to forget now, e.g. passes the access list still holds). Counts whose last-seen time is
        unknown are stamped with `lkg` here, so the KEEP_UNKNOWN bound starts from a trusted time.

        A pass with a known expiry E goes once E + 2 * skew <= lkg. Why that is safe, and why never by the wall
        clock: a forgotten count matters only if the pass is granted again. A token is granted only while
        the clock guard trusts the wall clock, which needs now >= LKG - skew (LKG never moves back, and the
        caller stores it in the same transaction as the forgetting, so a restart loads at least this lkg), and
        only inside its window widened by the skew, now < E + skew. With E + 2 * skew <= lkg <= LKG both
        cannot hold: a clock set back far enough to re-open the window is distrusted, and one set back less
        is past the window. A wall clock set forward moves nothing here: LKG rises only with trusted readings
        (NTP-synchronised, or server time that agrees with our clock) and the monotonic clock. The access
        list's passes are not gated by the clock guard, so `keep` them while the list holds them.

        A pass whose expiry this gateway never learnt (counts only from peers' reports, or stored before
        expiries were kept) goes KEEP_UNKNOWN after its last use learnt here, by the same time; learning its
        expiry from a verified token later brings the normal rule in."""
        margin = 2 * skew
        held = set(keep)
        out: list[str] = []
        for pass_id in self._counts:
            if pass_id in held:
                continue
            expires = self._expires.get(pass_id)
            if expires is not None:
                if expires + margin <= lkg:
                    out.append(pass_id)
                continue
            seen = self._seen.get(pass_id)
            if seen is None:
                self._seen[pass_id] = lkg
                self._dirty.update((pass_id, gw) for gw in self._counts[pass_id])
            elif seen + KEEP_UNKNOWN + margin <= lkg:
                out.append(pass_id)
        return out

    def forget(self, pass_ids: Iterable[str]) -> None:
        """Drop passes that can no longer be used (see `expired`), so the ledger stays bounded."""
        for pass_id in pass_ids:
            gone = self._counts.pop(pass_id, None)
            self.totals.pop(pass_id, None)
            self._expires.pop(pass_id, None)
            self._seen.pop(pass_id, None)
            if gone is not None:
                self._dirty.difference_update((pass_id, gw) for gw in gone)
                self._forgotten.add(pass_id)

    def take_changes(self) -> LedgerChanges:
        """The rows changed and passes forgotten since the last call (as they are now); marks them clean."""
        rows = [self._row(p, g) for p, g in sorted(self._dirty) if g in self._counts.get(p, {})]
        forgotten = sorted(self._forgotten)
        self._dirty.clear()
        self._forgotten.clear()
        return LedgerChanges(rows, forgotten)

    def give_back(self, changes: LedgerChanges) -> None:
        """Changes whose write failed: they are taken again (with the values then current) next time."""
        for pass_id, gw, *_ in changes.rows:
            if gw in self._counts.get(pass_id, {}):
                self._dirty.add((pass_id, gw))
        self._forgotten.update(changes.forgotten)

    def rows(self) -> list[Row]:
        """Every row (for moving a JSON ledger into the table)."""
        return [self._row(p, g) for p, c in self._counts.items() for g in c]

    def to_state(self) -> dict[str, dict[str, int]]:
        return {p: dict(c) for p, c in self._counts.items()}

    @staticmethod
    def from_state(value: object) -> dict[str, dict[str, int]]:
        """Parse what to_state() stored (as JSON); anything unexpected is skipped, not fatal."""
        if not isinstance(value, Mapping):
            return {}
        out: dict[str, dict[str, int]] = {}
        for pass_id, counts in value.items():
            if isinstance(pass_id, str) and isinstance(counts, Mapping):
                out[pass_id] = {
                    str(g): n for g, n in counts.items() if type(n) is int and n >= 0 and isinstance(g, str)
                }
        return out

    def _note(self, pass_id: str, expires: datetime | None, seen: datetime | None) -> None:
        if expires is not None and (pass_id not in self._expires or expires > self._expires[pass_id]):
            self._expires[pass_id] = expires
            self._dirty.update((pass_id, gw) for gw in self._counts[pass_id])
        if seen is not None and (pass_id not in self._seen or seen > self._seen[pass_id]):
            self._seen[pass_id] = seen

    def _row(self, pass_id: str, gw: str) -> Row:
        return pass_id, gw, self._counts[pass_id][gw], self._seen.get(pass_id), self._expires.get(pass_id)

    def _sum(self, pass_id: str) -> None:
        self.totals[pass_id] = sum(self._counts.get(pass_id, {}).values())
