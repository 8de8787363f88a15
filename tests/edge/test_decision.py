"""Every decision reason, anti-passback, lockdown and responders, visitor passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.decision import AccessRequest, DecisionEngine, GatewayState, Reason
from edge.errors import AccessListError
from edge.model import (
    AccessList,
    AccessRule,
    AntiPassbackMode,
    AntiPassbackRule,
    Credential,
    CredentialKind,
    Direction,
    Door,
    DoorMode,
    Group,
    Interval,
    Person,
    Reader,
    Schedule,
    Site,
    Status,
    VisitorPass,
)

CARD = CredentialKind.CARD
# Monday 2026-01-05 10:00 in Shanghai (UTC+8).
NOW = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def make_site(apb_mode: AntiPassbackMode = AntiPassbackMode.HARD) -> Site:
    doors = {
        "gate": Door("gate", "Main gate", "c1", 1),
        "lobby": Door("lobby", "Lobby A", "c1", 2),
        "gym": Door("gym", "Gym", "c1", 3),
    }
    readers = {
        "gate-in": Reader("gate-in", "gate", Direction.IN, "compound"),
        "gate-out": Reader("gate-out", "gate", Direction.OUT, "compound"),
        "lobby-in": Reader("lobby-in", "lobby"),
        "gym-in": Reader("gym-in", "gym"),
    }
    apb = {"compound": AntiPassbackRule("compound", apb_mode, timeout_seconds=300)}
    return Site("s1", "Asia/Shanghai", doors, readers, apb)


def make_acl() -> AccessList:
    weekdays_9_to_17 = Schedule(
        "office", weekly=tuple((Interval.parse("09:00-17:00"),) if d < 5 else () for d in range(7))
    )
    people = [
        Person("p-zhang", "Zhang Wei", group_ids=("residents",)),
        Person("p-li", "Li Na", group_ids=("residents",), status=Status.DISABLED),
        Person("p-new", "New Tenant", group_ids=("residents",), valid_from=NOW + HOUR),
        Person("p-gone", "Moved Out", group_ids=("residents",), valid_until=NOW - HOUR),
        Person("p-cleaner", "Cleaner", group_ids=("cleaners",)),
        Person("p-guard", "Guard", group_ids=("staff",), responder=True),
        Person("p-nogroup", "Nobody"),
    ]
    creds = [
        Credential(CARD, "1001", "p-zhang"),
        Credential(CARD, "1002", "p-li"),
        Credential(CARD, "1003", "p-new"),
        Credential(CARD, "1004", "p-gone"),
        Credential(CARD, "1005", "p-cleaner"),
        Credential(CARD, "1006", "p-guard"),
        Credential(CARD, "1007", "p-nogroup"),
        Credential(CARD, "2001", "p-zhang", status=Status.REVOKED),
        Credential(CARD, "2002", "p-zhang", status=Status.DISABLED),
        Credential(CARD, "2003", "p-zhang", valid_from=NOW + HOUR),
        Credential(CARD, "2004", "p-zhang", valid_until=NOW),
        Credential(CredentialKind.PIN, "ab12", "p-zhang"),
    ]
    rules = [
        AccessRule("r1", "residents", ("gate", "lobby")),
        AccessRule("r2", "cleaners", ("gate", "lobby"), "office"),
        AccessRule("r3", "staff", ("gate", "lobby", "gym")),
    ]
    passes = [
        VisitorPass("v1", ("gate",), NOW - HOUR, NOW + HOUR, max_uses=2, label="Courier"),
        VisitorPass("v2", ("gate",), NOW + HOUR, NOW + 2 * HOUR),
        VisitorPass("v3", ("gate",), NOW - 2 * HOUR, NOW - HOUR),
        VisitorPass("v4", ("gate",), NOW - HOUR, NOW + HOUR, status=Status.REVOKED),
        VisitorPass("v5", ("lobby",), NOW - HOUR, NOW + HOUR),
    ]
    groups = [Group("residents"), Group("cleaners"), Group("staff")]
    return AccessList.build(
        version=1,
        people=people,
        groups=groups,
        schedules=[weekdays_9_to_17],
        rules=rules,
        credentials=creds,
        passes=passes,
    )


@pytest.fixture
def engine() -> DecisionEngine:
    return DecisionEngine(make_site(), make_acl())


def ask(
    engine: DecisionEngine,
    reader: str,
    value: str,
    kind: CredentialKind = CARD,
    at: datetime = NOW,
    mono: float = 0.0,
) -> Reason:
    return engine.decide(AccessRequest(reader, kind, value, at), mono).reason


@pytest.mark.parametrize(
    ("reader", "card", "reason"),
    [
        ("lobby-in", "1001", Reason.GRANTED),
        ("nowhere", "1001", Reason.UNKNOWN_READER),
        ("lobby-in", "9999", Reason.UNKNOWN_CREDENTIAL),
        ("lobby-in", "2001", Reason.CREDENTIAL_REVOKED),
        ("lobby-in", "2002", Reason.CREDENTIAL_DISABLED),
        ("lobby-in", "2003", Reason.CREDENTIAL_NOT_YET_VALID),
        ("lobby-in", "2004", Reason.CREDENTIAL_EXPIRED),  # valid_until is exclusive
        ("lobby-in", "1002", Reason.PERSON_DISABLED),
        ("lobby-in", "1003", Reason.PERSON_NOT_YET_VALID),
        ("lobby-in", "1004", Reason.PERSON_EXPIRED),
        ("gym-in", "1001", Reason.NO_ACCESS_TO_DOOR),
        ("lobby-in", "1007", Reason.NO_ACCESS_TO_DOOR),
        ("lobby-in", "1005", Reason.GRANTED),  # Monday 10:00 local, inside 09:00-17:00
    ],
)
def test_card_reasons(engine: DecisionEngine, reader: str, card: str, reason: Reason) -> None:
    d = engine.decide(AccessRequest(reader, CARD, card, NOW), 0.0)
    assert d.reason is reason
    assert d.granted is (reason is Reason.GRANTED)


def test_decision_names_person_door_and_direction(engine: DecisionEngine) -> None:
    d = engine.decide(AccessRequest("gate-in", CARD, "1001", NOW), 0.0)
    assert (d.person_id, d.door_id, d.direction, d.credential) == ("p-zhang", "gate", Direction.IN, "1001")


def test_schedule_is_evaluated_in_site_local_time(engine: DecisionEngine) -> None:
    # 08:30 UTC is 16:30 in Shanghai (open); 09:30 UTC is 17:30 (closed), though 09:30 would be open in UTC.
    assert ask(engine, "lobby-in", "1005", at=NOW.replace(hour=8, minute=30)) is Reason.GRANTED
    assert ask(engine, "lobby-in", "1005", at=NOW.replace(hour=9, minute=30)) is Reason.OUTSIDE_SCHEDULE
    saturday = NOW + timedelta(days=5)
    assert ask(engine, "lobby-in", "1005", at=saturday) is Reason.OUTSIDE_SCHEDULE


def test_holiday_closes_a_schedule(engine: DecisionEngine) -> None:
    engine.acl.holidays = frozenset({NOW.date()})
    assert ask(engine, "lobby-in", "1005") is Reason.OUTSIDE_SCHEDULE
    assert ask(engine, "lobby-in", "1001") is Reason.GRANTED  # an always-rule ignores holidays


def test_pin_credential(engine: DecisionEngine) -> None:
    assert ask(engine, "lobby-in", "ab12", CredentialKind.PIN) is Reason.GRANTED
    assert ask(engine, "lobby-in", "ab12", CARD) is Reason.UNKNOWN_CREDENTIAL  # kinds do not mix


def test_hard_anti_passback(engine: DecisionEngine) -> None:
    assert ask(engine, "gate-in", "1001", mono=0) is Reason.GRANTED
    assert ask(engine, "gate-in", "1001", mono=10) is Reason.ANTI_PASSBACK  # passed the card back
    assert ask(engine, "lobby-in", "1001", mono=11) is Reason.GRANTED  # other doors are not in the area
    assert ask(engine, "gate-out", "1001", mono=20) is Reason.GRANTED
    assert ask(engine, "gate-out", "1001", mono=30) is Reason.ANTI_PASSBACK
    assert ask(engine, "gate-in", "1001", mono=40) is Reason.GRANTED
    # Timed: after the timeout the same direction is allowed again (a missed exit read must not lock anyone out).
    assert ask(engine, "gate-in", "1001", mono=40 + 299.9) is Reason.ANTI_PASSBACK
    assert ask(engine, "gate-in", "1001", mono=40 + 300) is Reason.GRANTED


def test_denied_reads_do_not_move_anti_passback(engine: DecisionEngine) -> None:
    assert ask(engine, "gate-in", "1001", mono=0) is Reason.GRANTED
    assert ask(engine, "gate-in", "1001", mono=1) is Reason.ANTI_PASSBACK
    assert ask(engine, "gate-out", "1001", mono=2) is Reason.GRANTED


def test_soft_anti_passback_grants_and_flags() -> None:
    engine = DecisionEngine(make_site(AntiPassbackMode.SOFT), make_acl())
    first = engine.decide(AccessRequest("gate-in", CARD, "1001", NOW), 0)
    second = engine.decide(AccessRequest("gate-in", CARD, "1001", NOW), 1)
    assert (first.granted, first.apb_violation) == (True, False)
    assert (second.granted, second.apb_violation) == (True, True)


def test_lockdown_denies_everyone_but_responders(engine: DecisionEngine) -> None:
    engine.state.lockdown = True
    assert ask(engine, "lobby-in", "1001") is Reason.LOCKDOWN
    assert ask(engine, "lobby-in", "1006") is Reason.GRANTED_RESPONDER
    assert ask(engine, "gate-in", "v1", CredentialKind.PASS) is Reason.LOCKDOWN
    assert ask(engine, "lobby-in", "9999") is Reason.UNKNOWN_CREDENTIAL
    assert (
        ask(engine, "lobby-in", "2001") is Reason.CREDENTIAL_REVOKED
    )  # a revoked responder card stays revoked
    engine.state.lockdown = False
    assert ask(engine, "lobby-in", "1001") is Reason.GRANTED


def test_door_modes(engine: DecisionEngine) -> None:
    engine.state.door_modes["lobby"] = DoorMode.LOCKED
    assert ask(engine, "lobby-in", "1001") is Reason.DOOR_LOCKED
    assert ask(engine, "lobby-in", "1006") is Reason.GRANTED_RESPONDER
    assert ask(engine, "gate-in", "1001") is Reason.GRANTED
    engine.state.door_modes["lobby"] = DoorMode.LOCKDOWN
    assert ask(engine, "lobby-in", "1001") is Reason.LOCKDOWN


def test_visitor_pass_reasons_and_uses(engine: DecisionEngine) -> None:
    p = CredentialKind.PASS
    assert ask(engine, "gate-in", "v1", p, mono=0) is Reason.GRANTED
    assert ask(engine, "gate-out", "v1", p, mono=1) is Reason.GRANTED
    assert ask(engine, "gate-in", "v1", p, mono=2) is Reason.PASS_USED_UP
    assert engine.state.pass_uses["v1"] == 2
    assert ask(engine, "gate-in", "v2", p) is Reason.PASS_NOT_YET_VALID
    assert ask(engine, "gate-in", "v3", p) is Reason.PASS_EXPIRED
    assert ask(engine, "gate-in", "v4", p) is Reason.PASS_REVOKED
    assert ask(engine, "gate-in", "v5", p) is Reason.PASS_WRONG_DOOR
    assert ask(engine, "gate-in", "nope", p) is Reason.UNKNOWN_CREDENTIAL
    assert engine.state.pass_uses.get("v5", 0) == 0


def test_denied_pass_reads_do_not_count_as_uses(engine: DecisionEngine) -> None:
    engine.state.lockdown = True
    assert ask(engine, "gate-in", "v1", CredentialKind.PASS) is Reason.LOCKDOWN
    assert engine.state.pass_uses.get("v1", 0) == 0


def test_evaluate_is_pure(engine: DecisionEngine) -> None:
    from edge.decision import evaluate

    before = (dict(engine.state.positions), dict(engine.state.pass_uses))
    for _ in range(3):
        d = evaluate(
            AccessRequest("gate-in", CARD, "1001", NOW), engine.site, engine.acl, engine.state, 0.0, engine.tz
        )
        assert d.reason is Reason.GRANTED
    assert (dict(engine.state.positions), dict(engine.state.pass_uses)) == before


def test_access_list_refuses_dangling_references() -> None:
    with pytest.raises(AccessListError, match="unknown group"):
        AccessList.build(version=1, rules=[AccessRule("r", "ghosts", ("gate",))])
    with pytest.raises(AccessListError, match="unknown person"):
        AccessList.build(version=1, credentials=[Credential(CARD, "1", "nobody")])
    with pytest.raises(AccessListError, match="unknown door"):
        Site("s", "UTC", {}, {"r": Reader("r", "missing")})


def test_removing_a_person_removes_their_credentials(engine: DecisionEngine) -> None:
    engine.acl.remove_person("p-zhang")
    assert ask(engine, "lobby-in", "1001") is Reason.UNKNOWN_CREDENTIAL
    assert ask(engine, "lobby-in", "ab12", CredentialKind.PIN) is Reason.UNKNOWN_CREDENTIAL


def test_rule_delta_reindexes(engine: DecisionEngine) -> None:
    assert ask(engine, "gym-in", "1001") is Reason.NO_ACCESS_TO_DOOR
    engine.acl.upsert_rule(AccessRule("r4", "residents", ("gym",)))
    assert ask(engine, "gym-in", "1001") is Reason.GRANTED
    engine.acl.remove_rule("r4")
    assert ask(engine, "gym-in", "1001") is Reason.NO_ACCESS_TO_DOOR


def test_state_defaults_from_site() -> None:
    site = make_site()
    state = GatewayState()
    assert state.mode_of("gate") is DoorMode.NORMAL
    assert DecisionEngine(site, make_acl()).state.door_modes == dict.fromkeys(site.doors, DoorMode.NORMAL)


def test_prune_forgets_only_expired_positions(engine: DecisionEngine) -> None:
    assert ask(engine, "gate-in", "1001", mono=0) is Reason.GRANTED
    assert ask(engine, "gate-in", "1006", mono=200) is Reason.GRANTED
    assert engine.prune(299) == 0
    assert engine.prune(300) == 1
    assert list(engine.state.positions) == [("person:p-guard", "compound")]
    assert ask(engine, "gate-in", "1006", mono=301) is Reason.ANTI_PASSBACK  # still remembered
