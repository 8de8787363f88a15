"""The down payloads of the contract, as the gateway reads them: strict (unknown keys refused), tagged unions
that name what was wrong, and the revocation set the downlink orders deltas by."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloud_sync import delta_apply
from cloud_sync.messages import (
    REVOKING_OPS,
    AccessListDocument,
    AclState,
    CommandEnvelope,
    CommandReply,
    Delta,
    DeltaOp,
    ErrorReport,
    OpenDoor,
    SetMode,
    SnapshotRequest,
    UpsertPass,
    iso,
)
from pydantic import ValidationError

from edge.demo_data import demo_access_list
from edge.model import DoorMode

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _op_names() -> set[str]:
    union = typing.get_args(typing.get_args(DeltaOp)[0])
    return {typing.get_args(cls.model_fields["op"].annotation)[0] for cls in union}


def test_every_delta_op_is_either_a_revocation_or_a_ranked_grant() -> None:
    names = _op_names()
    assert names >= REVOKING_OPS
    assert names - REVOKING_OPS == set(delta_apply._GRANT_RANK)


def test_upsert_pass_travels_as_pass() -> None:
    body = {
        "op": "upsert_pass",
        "pass": {
            "id": "v",
            "doors": ["d"],
            "valid_from": iso(NOW),
            "valid_until": iso(NOW + timedelta(hours=1)),
        },
    }
    d = Delta.model_validate({"from_version": 1, "to_version": 2, "ops": [body]})
    op = d.ops[0]
    assert isinstance(op, UpsertPass) and op.visitor_pass.id == "v"
    assert json.loads(d.model_dump_json(by_alias=True))["ops"][0]["pass"]["id"] == "v"


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        ({"from_version": 1, "to_version": 2, "ops": [{"op": "nuke"}]}, "union_tag_invalid"),
        ({"from_version": 1, "to_version": 2, "ops": [{"id": "x"}]}, "union_tag_not_found"),
        ({"from_version": 1, "to_version": 2, "ops": [], "signature": "x"}, "extra_forbidden"),
        ({"from_version": -1, "to_version": 2, "ops": []}, "greater_than_equal"),
        (
            {"from_version": 1, "to_version": 2, "ops": [{"op": "delete_person", "id": ""}]},
            "string_too_short",
        ),
    ],
)
def test_deltas_are_strict(payload: dict[str, Any], error_type: str) -> None:
    with pytest.raises(ValidationError) as err:
        Delta.model_validate_json(json.dumps(payload))
    assert error_type in {e["type"] for e in err.value.errors()}


def _cmd(**fields: Any) -> str:
    base = {
        "id": "c-1",
        "operator": "ops",
        "issued_at": iso(NOW),
        "expires_at": iso(NOW + timedelta(seconds=30)),
    }
    return json.dumps({"cmd": {**base, **fields}})


def test_commands_parse_to_their_kind() -> None:
    cmd = CommandEnvelope.model_validate_json(_cmd(command="open_door", door="gate", reason="courier")).cmd
    assert isinstance(cmd, OpenDoor) and (cmd.door, cmd.reason) == ("gate", "courier")
    mode = CommandEnvelope.model_validate_json(_cmd(command="set_mode", mode="lockdown")).cmd
    assert isinstance(mode, SetMode) and mode.mode is DoorMode.LOCKDOWN and mode.door is None


@pytest.mark.parametrize(
    ("fields", "error_type"),
    [
        ({"command": "self_destruct"}, "union_tag_invalid"),
        ({"command": "open_door"}, "missing"),
        ({"command": "ping", "issued_at": "2026-03-01T08:00:00"}, "timezone_aware"),
        ({"command": "ping", "operator": ""}, "string_too_short"),
        ({"command": "set_mode", "mode": "party"}, "enum"),
        ({"command": "ping", "extra": 1}, "extra_forbidden"),
    ],
)
def test_bad_commands_say_what_is_wrong(fields: dict[str, Any], error_type: str) -> None:
    with pytest.raises(ValidationError) as err:
        CommandEnvelope.model_validate_json(_cmd(**fields))
    assert error_type in {e["type"] for e in err.value.errors()}


def test_up_messages_round_trip() -> None:
    for msg in (
        AclState(version=3, applied_at=NOW),
        SnapshotRequest(reason="gap", have_version=3, detail="delta 5->6 on 3"),
        CommandReply(id="c", ok=False, error="replayed", detail="command id already used"),
        ErrorReport(at=NOW, topic="menwei/v1/s/g/cmd", error="not_json", detail="(document): Invalid JSON"),
    ):
        assert type(msg).model_validate_json(msg.model_dump_json()) == msg
    with pytest.raises(ValidationError):
        ErrorReport(at=NOW, topic="t", error="not_json", detail="x" * 2001)
    with pytest.raises(ValidationError):
        SnapshotRequest.model_validate({"reason": "bored", "have_version": 1})


def test_a_document_round_trips_through_its_domain_list() -> None:
    acl = demo_access_list(4, NOW, "side-door", ["main-gate", "side-door"])
    doc = AccessListDocument.of(acl, "site")
    again = AccessListDocument.model_validate_json(doc.model_dump_json(by_alias=True))
    assert again == doc and again.to_domain() == acl
    with pytest.raises(ValidationError):
        AccessListDocument.model_validate(
            {"version": 1, "site": "s", "people": [{"id": "p", "name": "n", "x": 1}]}
        )
