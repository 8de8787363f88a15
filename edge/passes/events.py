"""Events of the visitor-pass layer, published on the gateway's bus like every other event.

They live here rather than in edge.events so this feature adds types without touching the shared module; the
bus dispatches by class, so subscribers (the event log, the cloud link) need nothing special.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from edge.events import Event
from edge.passes.uses import UseReport


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class PassUseEvent(Event):
    """This gateway counted a use of a pass. Not stored (the decision event is); it is what the site's other
    gateways need to hear, so the cloud link (cloud_sync.pass_sync) sends its report on this gateway's
    passes/uses topic."""

    persist: ClassVar[bool] = False
    type: ClassVar[str] = "pass_use"
    report: UseReport

    def to_record(self) -> dict[str, Any]:
        r = self.report
        return {
            "type": self.type,
            "at": _iso(self.at),
            "pass": r.pass_id,
            "gateway": r.gateway_id,
            "count": r.count,
        }


@dataclass(frozen=True, slots=True)
class WalkInEvent(Event):
    """A guard registered a walk-in visitor and the gateway issued a pass: the audit record, synced up with
    the event log. Holds the pass's terms, never the token (a bearer credential)."""

    type: ClassVar[str] = "walkin_registered"
    pass_id: str
    host_unit: str
    label: str
    door_ids: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    max_uses: int | None
    by: str  # the guard, as the console names them
    gateway_id: str
    kid: str  # hex key id the pass is signed under

    def to_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": _iso(self.at),
            "pass": self.pass_id,
            "host_unit": self.host_unit,
            "label": self.label,
            "doors": list(self.door_ids),
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "max_uses": self.max_uses,
            "by": self.by,
            "gateway": self.gateway_id,
            "kid": self.kid,
        }
