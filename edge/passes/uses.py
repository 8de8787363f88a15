"""Visitor pass use counts, kept so that gateways of one site can share them: a grow-only counter per pass.

Why this shape: a one-time pass used at gate A must be refused at gate B. Each gateway counts its own uses of
a pass and tells the others "gateway G has counted n uses of pass X (the last at T)" (a UseReport). Merging
keeps, per (pass, gateway), the largest count seen, and a pass's total is the sum over gateways. Taking the
maximum makes a merge idempotent and order-free: a report delivered twice, late, or after a newer one changes
nothing, so the reports can travel over an at-least-once channel (MQTT QoS 1) without bookkeeping.

The totals live in the dict the decision engine reads (GatewayState.pass_uses); this ledger keeps them equal
to the per-gateway sums. Uses counted before the ledger existed are attributed to this gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

STATE_KEY = "pass_use_ledger"


@dataclass(frozen=True, slots=True)
class UseReport:
    """Gateway `gateway_id` has counted `count` uses of pass `pass_id`, the last at `at`."""

    pass_id: str
    gateway_id: str
    count: int
    at: datetime


class UseLedger:
    def __init__(
        self,
        gateway_id: str,
        totals: dict[str, int],
        counts: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.totals = totals
        self._counts: dict[str, dict[str, int]] = {p: dict(c) for p, c in (counts or {}).items()}
        for pass_id, total in list(totals.items()):
            known = sum(self._counts.get(pass_id, {}).values())
            if total > known:
                mine = self._counts.setdefault(pass_id, {})
                mine[gateway_id] = mine.get(gateway_id, 0) + total - known
        for pass_id in self._counts:
            self._sum(pass_id)

    def record_local(self, pass_id: str, at: datetime) -> UseReport:
        """Count one use here (after a grant); the report to tell the site's other gateways."""
        mine = self._counts.setdefault(pass_id, {})
        mine[self.gateway_id] = mine.get(self.gateway_id, 0) + 1
        self._sum(pass_id)
        return UseReport(pass_id, self.gateway_id, mine[self.gateway_id], at)

    def merge(self, report: UseReport) -> bool:
        """Take in a report from any gateway (our own echo included). True if a total changed."""
        if report.count < 0:
            raise ValueError("a use count is never negative")
        counts = self._counts.setdefault(report.pass_id, {})
        if report.count <= counts.get(report.gateway_id, 0):
            return False
        counts[report.gateway_id] = report.count
        self._sum(report.pass_id)
        return True

    def total(self, pass_id: str) -> int:
        return self.totals.get(pass_id, 0)

    def counts(self, pass_id: str) -> dict[str, int]:
        return dict(self._counts.get(pass_id, {}))

    def local_counts(self, limit: int) -> list[tuple[str, int]]:
        """(pass, this gateway's count) of the last `limit` passes, in the order the ledger learnt of them,
        that were used here."""
        mine = [(p, c[self.gateway_id]) for p, c in self._counts.items() if c.get(self.gateway_id, 0) > 0]
        return mine[-limit:] if limit > 0 else []

    def forget(self, pass_ids: Iterable[str]) -> None:
        """Drop passes that can no longer be used (expired), so the ledger stays bounded."""
        for pass_id in pass_ids:
            self._counts.pop(pass_id, None)
            self.totals.pop(pass_id, None)

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

    def _sum(self, pass_id: str) -> None:
        self.totals[pass_id] = sum(self._counts.get(pass_id, {}).values())
