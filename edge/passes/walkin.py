"""Walk-in visitors: a guard registers a visitor at the gate and the gateway issues the pass itself.

Why the gateway signs: the gate must work when the cloud is unreachable. The gateway holds its own Ed25519 key
(a systemd credential, never in the config); its public key is in the site's trust list, so every gateway of
the site accepts the pass once the cloud has synced that key, and this gateway accepts it at once (it trusts
its own key locally, see trust.py).

A registration is checked against the site before anything is signed: the host unit must have an active
resident, the label is short and printable, the doors exist, the hours and uses are within the site's limits
([passes] in the config), and the gateway's clock must be trusted (a pass stamped with a wrong clock would be
wrong everywhere). Each pass issued is a WalkInEvent in the event log, which the uploader sends up: that is
both the audit trail and how the cloud learns of the pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from edge.clock import Clock
from edge.config import PassesSection
from edge.events import EventBus
from edge.model import AccessList, Person, PersonKind, Site, Status
from edge.passes.claims import MAX_LABEL, PassClaims, whole_seconds
from edge.passes.clock_guard import ClockGuard
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.events import WalkInEvent
from edge.passes.issue import PassSigner, new_pass_id, render_qr_png, render_qr_text


@dataclass(frozen=True, slots=True)
class WalkInRequest:
    host_unit: str  # e.g. "A-1201": building and unit as the access list has them, or the unit alone
    label: str  # a minimal name label, e.g. "Ms. Li" or "Courier"; nothing more about the visitor
    door_ids: tuple[str, ...] = ()  # empty: the site's default walk-in doors
    hours: float | None = None  # None: the site's default
    uses: int | None = None  # None: the site's default


@dataclass(frozen=True, slots=True)
class WalkInPass:
    token: str
    claims: PassClaims

    def qr_png(self) -> bytes:
        return render_qr_png(self.token)

    def qr_text(self) -> str:
        return render_qr_text(self.token)


def unit_label(person: Person) -> str | None:
    """How a resident's unit is named at the gate: 'A-1201' with a building, '1201' without."""
    if person.unit is None:
        return None
    return f"{person.building}-{person.unit}" if person.building else person.unit


class WalkInDesk:
    def __init__(
        self,
        *,
        site: Site,
        gateway_id: str,
        settings: PassesSection,
        signer: PassSigner,
        bus: EventBus,
        clock: Clock,
        clock_guard: ClockGuard,
        access_list: Callable[[], AccessList],
    ) -> None:
        self.site = site
        self.gateway_id = gateway_id
        self.settings = settings
        self.signer = signer
        self.bus = bus
        self.clock = clock
        self.clock_guard = clock_guard
        self.access_list = access_list

    def register(self, request: WalkInRequest, *, by: str) -> WalkInPass:
        """Check, issue, audit (on the event loop: it publishes on the bus). PassError(INVALID_REQUEST) names
        the first problem; (CLOCK_UNTRUSTED) when the gateway's clock cannot be trusted."""
        s = self.settings
        host_unit = self._host_unit(request.host_unit)
        label = " ".join(request.label.split())
        if not label or len(label) > MAX_LABEL or not label.isprintable():
            raise _invalid(f"the visitor label must be 1-{MAX_LABEL} printable characters")
        doors = request.door_ids or tuple(s.walkin_doors)
        if not doors:
            raise _invalid("name the doors: this site has no default walk-in doors")
        unknown = [d for d in doors if d not in self.site.doors]
        if unknown:
            raise _invalid(f"unknown door {unknown[0]!r}")
        hours = s.walkin_hours if request.hours is None else request.hours
        if not 0 < hours <= s.walkin_max_hours:
            raise _invalid(f"hours must be more than 0 and at most {s.walkin_max_hours:g}")
        uses = s.walkin_uses if request.uses is None else request.uses
        if not 1 <= uses <= s.walkin_max_uses:
            raise _invalid(f"uses must be 1-{s.walkin_max_uses}")
        now, mono = self.clock.now(), self.clock.monotonic()
        distrust = self.clock_guard.distrust(now, mono)
        if distrust is not None:
            raise PassError(PassErrorReason.CLOCK_UNTRUSTED, distrust)
        start = whole_seconds(now)
        claims = PassClaims(
            pass_id=new_pass_id("W"),
            site=self.site.id,
            doors=tuple(dict.fromkeys(doors)),
            not_before=start,
            expires=start + timedelta(seconds=round(hours * 3600)),
            issued_at=start,
            max_uses=uses,
            host_unit=host_unit,
            label=label,
        )
        token = self.signer.issue(claims)
        self.bus.publish(
            WalkInEvent(
                at=now,
                pass_id=claims.pass_id,
                host_unit=host_unit,
                label=label,
                door_ids=claims.doors,
                valid_from=claims.not_before,
                valid_until=claims.expires,
                max_uses=uses,
                by=by,
                gateway_id=self.gateway_id,
                kid=self.signer.kid.hex(),
            )
        )
        return WalkInPass(token=token, claims=claims)

    def _host_unit(self, text: str) -> str:
        wanted = text.strip().upper()
        if not wanted:
            raise _invalid("name the host unit")
        for person in self.access_list().people.values():
            if person.kind is not PersonKind.RESIDENT or person.status is not Status.ACTIVE:
                continue
            label = unit_label(person)
            if label is not None and label.upper() == wanted:
                return label
        raise _invalid(f"no active resident in unit {text.strip()!r}")


def _invalid(detail: str) -> PassError:
    return PassError(PassErrorReason.INVALID_REQUEST, detail)
