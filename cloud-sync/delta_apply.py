"""A delta from the cloud, turned into checked actions applied to SQLite and to the list in force alike.

Why three steps:

1. `plan(delta)` converts the wire ops into domain objects and orders them: revocations and removals
   (messages.REVOKING_OPS) first, whatever order they were sent in, then grants parents before children
   (groups and schedules, people, then rules, credentials and passes). A delta that revokes card X and gives X
   to its new owner is therefore never, even for an instant, a delta that gives X away and then revokes it.
2. `resolve(acl, steps)` walks the steps against the list in force and produces the exact actions to take:
   a revocation marks the credential or pass revoked (so a later read says "revoked", not "unknown"), a
   revoked pass the list does not hold (a signed QR pass, verified from its token) goes on the revocation
   list (edge/store/revocation_store.py), a removed person takes their credentials along, and a grant that
   refers to something missing (a credential of an unknown person, a rule for an unknown group) refuses the
   whole delta with AccessListError, exactly as AccessList.validate() would. It only reads the list, so it
   runs in a worker thread.
3. `write(db, actions)` runs the actions through the store's helpers inside the caller's transaction, and
   `update(acl, actions)` applies the same actions to the in-memory list, on the event loop, between two
   decisions. Both get the same actions, so disk and memory cannot drift apart. (The revocation list lives
   in the pass runtime, not the access list: `unlisted_revocations(actions)` is what to hand it.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlite_utils
from cloud_sync.messages import (
    REVOKING_OPS,
    DeletePerson,
    DeleteRule,
    Delta,
    DeltaOp,
    RevokeCredential,
    RevokePass,
    SetHolidays,
    UpsertCredential,
    UpsertGroup,
    UpsertPass,
    UpsertPerson,
    UpsertRule,
    UpsertSchedule,
)

from edge.errors import AccessListError
from edge.model import (
    AccessList,
    AccessRule,
    Credential,
    CredentialKind,
    Group,
    Person,
    Schedule,
    Status,
    VisitorPass,
)
from edge.store import access_store
from edge.store.revocation_store import put_revocations

# How long a revocation of a pass the access list does not hold is kept when the cloud did not say when the
# pass expires (RevokePass.valid_until).
DEFAULT_REVOCATION_KEEP = timedelta(days=400)

# --- steps (what the cloud asked for) and actions (what will be done) -------------------------------------


@dataclass(frozen=True, slots=True)
class RemovePerson:
    person_id: str


@dataclass(frozen=True, slots=True)
class RevokeCredentialStep:
    kind: CredentialKind
    value: str


@dataclass(frozen=True, slots=True)
class RevokePassStep:
    pass_id: str
    forget_after: datetime  # if the list does not hold the pass: how long its revocation is kept


@dataclass(frozen=True, slots=True)
class RevokeUnlistedPass:
    """A revoked pass the access list does not hold (a signed QR pass): kept on the revocation list by id."""

    pass_id: str
    forget_after: datetime


@dataclass(frozen=True, slots=True)
class RemoveRule:
    rule_id: str


@dataclass(frozen=True, slots=True)
class PutHolidays:
    days: frozenset[date]


@dataclass(frozen=True, slots=True)
class RemoveCredentials:
    """The credentials a removed person held (found in the list in force), so memory drops exactly these."""

    keys: tuple[tuple[CredentialKind, str], ...]


Put = Group | Schedule | Person | AccessRule | Credential | VisitorPass
Step = RemovePerson | RevokeCredentialStep | RevokePassStep | RemoveRule | PutHolidays | Put
Action = RemovePerson | RemoveCredentials | RemoveRule | PutHolidays | RevokeUnlistedPass | Put

# Grants: parents before the things that refer to them. Revocations (rank 0) come first of all.
_GRANT_RANK = {
    "upsert_group": 1,
    "upsert_schedule": 1,
    "set_holidays": 1,
    "upsert_person": 2,
    "upsert_rule": 3,
    "upsert_credential": 3,
    "upsert_pass": 3,
}


def _rank(op: DeltaOp) -> int:
    return 0 if op.op in REVOKING_OPS else _GRANT_RANK[op.op]


def plan(delta: Delta, now: datetime | None = None) -> list[Step]:
    """The delta's ops as domain steps in the order they are applied (stable within a rank, so of two
    upserts of the same thing the later one wins). Raises AccessListError for a malformed schedule.
    `now` (default: the system clock) dates revocations that carry no expiry of their own."""
    at = now or datetime.now(UTC)
    return [_step(op, at) for op in sorted(delta.ops, key=_rank)]


def _step(op: DeltaOp, now: datetime) -> Step:
    match op:
        case DeletePerson():
            return RemovePerson(op.id)
        case RevokeCredential():
            return RevokeCredentialStep(op.kind, op.value)
        case RevokePass():
            return RevokePassStep(op.id, op.valid_until or now + DEFAULT_REVOCATION_KEEP)
        case DeleteRule():
            return RemoveRule(op.id)
        case SetHolidays():
            return PutHolidays(frozenset(op.holidays))
        case UpsertGroup():
            return op.group.to_domain()
        case UpsertSchedule():
            return op.schedule.to_domain()
        case UpsertPerson():
            return op.person.to_domain()
        case UpsertRule():
            return op.rule.to_domain()
        case UpsertCredential():
            return op.credential.to_domain()
        case UpsertPass():
            return op.visitor_pass.to_domain()


def resolve(acl: AccessList, steps: Iterable[Step]) -> list[Action]:
    """The actions that carry out `steps` on top of `acl`, checked for references. Reads `acl` only."""
    removed_people: set[str] = set()
    people: dict[str, Person] = {}
    groups: set[str] = set()
    schedules: set[str] = set()
    credentials: dict[tuple[CredentialKind, str], Credential] = {}
    passes: dict[str, VisitorPass] = {}
    actions: list[Action] = []

    def person_exists(pid: str) -> bool:
        return pid in people or (pid in acl.people and pid not in removed_people)

    def credential_now(key: tuple[CredentialKind, str]) -> Credential | None:
        if key in credentials:
            return credentials[key]
        cred = acl.credentials.get(key)
        return None if cred is None or cred.person_id in removed_people else cred

    for step in steps:
        match step:
            case RemovePerson():
                removed_people.add(step.person_id)
                people.pop(step.person_id, None)
                for key in [k for k, c in credentials.items() if c.person_id == step.person_id]:
                    del credentials[key]  # revoked a moment ago, now removed with their owner
                actions.append(step)
            case RevokeCredentialStep():
                key = (step.kind, step.value)
                cred = credential_now(key)
                if cred is not None and cred.status is not Status.REVOKED:
                    credentials[key] = dataclasses.replace(cred, status=Status.REVOKED)
                    actions.append(credentials[key])
            case RevokePassStep():
                vp = passes.get(step.pass_id) or acl.passes.get(step.pass_id)
                if vp is None:
                    actions.append(RevokeUnlistedPass(step.pass_id, step.forget_after))
                elif vp.status is not Status.REVOKED:
                    passes[vp.id] = dataclasses.replace(vp, status=Status.REVOKED)
                    actions.append(passes[vp.id])
            case RemoveRule() | PutHolidays():
                actions.append(step)
            case Group():
                groups.add(step.id)
                actions.append(step)
            case Schedule():
                schedules.add(step.id)
                actions.append(step)
            case Person():
                for gid in step.group_ids:
                    if gid not in groups and gid not in acl.groups:
                        raise AccessListError(f"person {step.id!r} is in unknown group {gid!r}")
                people[step.id] = step
                actions.append(step)
            case AccessRule():
                if step.group_id not in groups and step.group_id not in acl.groups:
                    raise AccessListError(f"rule {step.id!r} refers to unknown group {step.group_id!r}")
                sid = step.schedule_id
                if sid is not None and sid not in schedules and sid not in acl.schedules:
                    raise AccessListError(f"rule {step.id!r} refers to unknown schedule {sid!r}")
                actions.append(step)
            case Credential():
                if not person_exists(step.person_id):
                    raise AccessListError(
                        f"{step.kind} credential belongs to unknown person {step.person_id!r}"
                    )
                credentials[step.key] = step
                actions.append(step)
            case VisitorPass():
                passes[step.id] = step
                actions.append(step)
    if removed_people:
        # A removed person's credentials go with them, last of all (after a revocation of one of them, say).
        # Found here, in the worker thread, so the loop does not scan 200,000 credentials; `credentials` now
        # holds only the ones put after the removal, and those stay.
        gone = tuple(
            key
            for key, cred in acl.credentials.items()
            if cred.person_id in removed_people and key not in credentials
        )
        if gone:
            actions.append(RemoveCredentials(gone))
    return actions


def write(db: sqlite_utils.Database, actions: Iterable[Action]) -> None:
    """Apply `actions` to the store. Call inside the caller's transaction (the helpers become savepoints)."""
    for action in actions:
        match action:
            case RemovePerson():
                access_store.delete_person(db, action.person_id)
            case RemoveCredentials():
                for kind, value in action.keys:
                    access_store.delete_credential(db, kind, value)
            case RemoveRule():
                access_store.delete_rule(db, action.rule_id)
            case PutHolidays():
                access_store.set_holidays(db, sorted(action.days))
            case RevokeUnlistedPass():
                put_revocations(db, {action.pass_id: action.forget_after})
            case Group():
                access_store.upsert_group(db, action)
            case Schedule():
                access_store.upsert_schedule(db, action)
            case Person():
                access_store.upsert_person(db, action)
            case AccessRule():
                access_store.upsert_rule(db, action)
            case Credential():
                access_store.upsert_credential(db, action)
            case VisitorPass():
                access_store.upsert_pass(db, action)


def update(acl: AccessList, actions: Iterable[Action]) -> None:
    """Apply `actions` to the in-memory list (on the event loop: no decision sees half of them)."""
    rules_changed = False
    for action in actions:
        match action:
            case RemovePerson():
                acl.people.pop(action.person_id, None)
            case RemoveCredentials():
                for key in action.keys:
                    acl.credentials.pop(key, None)
            case RemoveRule():
                rules_changed |= acl.rules.pop(action.rule_id, None) is not None
            case PutHolidays():
                acl.holidays = action.days
            case RevokeUnlistedPass():
                pass  # not in the access list: see unlisted_revocations
            case Group():
                acl.groups[action.id] = action
            case Schedule():
                acl.schedules[action.id] = action
            case Person():
                acl.people[action.id] = action
            case AccessRule():
                acl.rules[action.id] = action
                rules_changed = True
            case Credential():
                acl.credentials[action.key] = action
            case VisitorPass():
                acl.passes[action.id] = action
    if rules_changed:
        acl.reindex()


def unlisted_revocations(actions: Iterable[Action]) -> dict[str, datetime]:
    """Pass id -> forget-after of the revocations for passes the access list does not hold, for the pass
    runtime (PassRuntime.revoke) once the delta committed."""
    return {a.pass_id: a.forget_after for a in actions if isinstance(a, RevokeUnlistedPass)}
