"""Combined factors per door: on doors that need more than a face, a face and a second credential (card, PIN,
phone key) of the same person, within a few seconds, in either order.

Why: the shipped liveness check stops photos and frozen frames, not a replayed video or a mask
(edge.face.liveness). A door to a plant room or a management office can demand that whoever the camera
recognised also holds their card. The combination is decided before the engine records anything: each half is
first evaluated purely (edge.decision.evaluate, so a denied half is denied for its own reason), a granted half
waits as "pending" and is answered SECOND_FACTOR_REQUIRED; when the other half of the same person arrives at the
same door in time, the engine decides it for real (anti-passback, counters, the grant).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge.decision import AccessRequest, Decision, DecisionEngine, Reason, evaluate
from edge.model import CredentialKind


@dataclass(frozen=True, slots=True)
class FactorRule:
    door_id: str
    second: frozenset[CredentialKind] = frozenset(
        {CredentialKind.CARD, CredentialKind.PIN, CredentialKind.BLE}
    )
    within_seconds: float = 10.0


class CombinedFactors:
    def __init__(self, rules: Iterable[FactorRule]) -> None:
        self.rules: Mapping[str, FactorRule] = {r.door_id: r for r in rules}
        self._pending: dict[tuple[str, str, bool], float] = {}  # (door, person, is_face) -> monotonic time

    def applies(self, engine: DecisionEngine, reader_id: str) -> bool:
        reader = engine.site.readers.get(reader_id)
        return reader is not None and reader.door_id in self.rules

    def decide(self, engine: DecisionEngine, request: AccessRequest, mono: float) -> Decision:
        reader = engine.site.readers.get(request.reader_id)
        rule = self.rules.get(reader.door_id) if reader is not None else None
        if rule is None:
            return engine.decide(request, mono)
        is_face = request.kind is CredentialKind.FACE
        if not is_face and request.kind not in rule.second:
            return engine.decide(request, mono)  # e.g. a visitor pass: its own rules decide
        probe = evaluate(request, engine.site, engine.acl, engine.state, mono, engine.tz)
        if not probe.granted or probe.person_id is None or probe.reason is Reason.GRANTED_RESPONDER:
            return engine.decide(request, mono) if probe.granted else probe
        self._expire(mono)
        other = (rule.door_id, probe.person_id, not is_face)
        if other in self._pending:
            del self._pending[other]
            return engine.decide(request, mono)
        self._pending[(rule.door_id, probe.person_id, is_face)] = mono
        return dataclasses.replace(probe, reason=Reason.SECOND_FACTOR_REQUIRED)

    def _expire(self, mono: float) -> None:
        for key, at in list(self._pending.items()):
            if mono - at > self.rules[key[0]].within_seconds:
                del self._pending[key]
