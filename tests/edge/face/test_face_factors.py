from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge.decision import AccessRequest, DecisionEngine, Reason
from edge.face.factors import CombinedFactors, FactorRule
from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    Door,
    Group,
    Person,
    Reader,
    Site,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FACE, CARD = CredentialKind.FACE, CredentialKind.CARD


@pytest.fixture
def engine() -> DecisionEngine:
    site = Site(
        "s",
        "UTC",
        {"plant": Door("plant", "Plant room", "c", 1), "lobby": Door("lobby", "Lobby", "c", 2)},
        {
            "plant-face": Reader("plant-face", "plant"),
            "plant-card": Reader("plant-card", "plant"),
            "lobby-face": Reader("lobby-face", "lobby"),
        },
    )
    acl = AccessList.build(
        version=1,
        people=[Person(p, p, face_consent=True, group_ids=("staff",)) for p in ("ann", "bob")],
        groups=[Group("staff")],
        rules=[AccessRule("r", "staff", ("plant", "lobby"))],
        credentials=[
            Credential(FACE, "tpl-ann", "ann"),
            Credential(CARD, "1001", "ann"),
            Credential(CARD, "2002", "bob"),
        ],
    )
    return DecisionEngine(site, acl)


def req(reader: str, kind: CredentialKind, value: str) -> AccessRequest:
    return AccessRequest(reader, kind, value, NOW)


def test_face_then_card_of_the_same_person_opens(engine: DecisionEngine) -> None:
    factors = CombinedFactors([FactorRule("plant", within_seconds=10)])
    first = factors.decide(engine, req("plant-face", FACE, "tpl-ann"), 0.0)
    assert first.reason is Reason.SECOND_FACTOR_REQUIRED
    assert not first.granted
    assert factors.decide(engine, req("plant-card", CARD, "1001"), 4.0).granted


def test_card_then_face_also_works_but_not_too_late_nor_with_someone_elses_card(
    engine: DecisionEngine,
) -> None:
    factors = CombinedFactors([FactorRule("plant", within_seconds=10)])
    assert (
        factors.decide(engine, req("plant-card", CARD, "1001"), 0.0).reason is Reason.SECOND_FACTOR_REQUIRED
    )
    assert factors.decide(engine, req("plant-face", FACE, "tpl-ann"), 3.0).granted
    # Consumed: the next face alone waits again; bob's card does not complete ann's face; too late is too late.
    assert (
        factors.decide(engine, req("plant-face", FACE, "tpl-ann"), 20.0).reason
        is Reason.SECOND_FACTOR_REQUIRED
    )
    assert (
        factors.decide(engine, req("plant-card", CARD, "2002"), 21.0).reason is Reason.SECOND_FACTOR_REQUIRED
    )
    assert (
        factors.decide(engine, req("plant-card", CARD, "1001"), 40.0).reason is Reason.SECOND_FACTOR_REQUIRED
    )


def test_a_denied_half_keeps_its_own_reason_and_other_doors_are_unaffected(engine: DecisionEngine) -> None:
    factors = CombinedFactors([FactorRule("plant")])
    assert factors.decide(engine, req("plant-card", CARD, "9999"), 0.0).reason is Reason.UNKNOWN_CREDENTIAL
    assert factors.decide(engine, req("lobby-face", FACE, "tpl-ann"), 0.0).granted
