#!/usr/bin/env python3
"""Generate docs/asyncapi.json, the machine-readable MQTT contract, from the code that implements it.

Why generated: payload schemas come from cloud-sync/messages.py (the pydantic models that validate every
message), topic addresses from cloud-sync/topics.py and connection defaults from cloud-sync/link.py, so the
document cannot drift from what the gateway accepts and sends. tests/cloud_sync/test_contract_doc.py
regenerates it in memory and fails when the committed file is stale; docs/contract.md is the prose.

The document is AsyncAPI 3.0 written from the gateway's point of view (it receives snapshots, deltas,
commands and the site's pass trust list; it sends everything else; pass use counts it both sends and
receives, from the site's other gateways), with MQTT bindings 0.2.0 for QoS, retain, message expiry, response
topic, correlation data, session expiry and the last will. Examples are fixed values, so the output is
byte-for-byte reproducible.

Usage: .venv/bin/python scripts/gen_contract.py [--check] [--out docs/asyncapi.json]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cloud_sync.dedupe import event_hash
from cloud_sync.link import LinkSettings
from cloud_sync.messages import (
    AccessListDocument,
    AclState,
    BleKeyList,
    CommandEnvelope,
    CommandReply,
    Delta,
    DeviceHealth,
    ErrorReport,
    EventBatch,
    GatewayStatus,
    Message,
    OpenDoor,
    PassTrustList,
    PassUseCount,
    PassUses,
    RevokeCredential,
    RevokePass,
    SnapshotChunk,
    SnapshotRequest,
    Telemetry,
    UploadedEvent,
    UpsertCredential,
    UpsertPass,
    WireBleKey,
    WireCredential,
    WireGroup,
    WirePass,
    WirePerson,
    WireRule,
    WireSchedule,
    WireTrustedKey,
)
from cloud_sync.topics import PREFIX, SITE_LEVEL, Topics
from pydantic.json_schema import models_json_schema

from edge.model import CredentialKind

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "asyncapi.json"
BINDING = "0.2.0"  # AsyncAPI MQTT bindings version
SEGMENT = "^[a-z0-9][a-z0-9_-]{0,62}$"


@dataclass(frozen=True, slots=True)
class Channel:
    key: str  # id in the document
    topic: str  # attribute of topics.Topics that builds the address
    direction: Literal["down", "up", "peer"]  # down: cloud -> gateway; peer: gateway -> the site's gateways
    message: type[Message]
    qos: int
    retain: bool
    summary: str
    description: str


CHANNELS = (
    Channel(
        "aclSnapshot",
        "snapshot",
        "down",
        SnapshotChunk,
        1,
        False,
        "A full access list, in sha-256-checked chunks",
        "The chunks' data, base64-decoded and joined in index order, are the gzip'd UTF-8 JSON of an "
        "AccessListDocument. The gateway applies it only when all `count` chunks of one `snapshot_id` arrived, "
        "each chunk's `sha256` and the `total_sha256` match, and the document validates; then it replaces the "
        "access list atomically and publishes acl/state. A failed check is reported on errors and followed by "
        "acl/request.",
    ),
    Channel(
        "aclDelta",
        "delta",
        "down",
        Delta,
        1,
        False,
        "Changes on top of one access-list version",
        "Applies only on top of `from_version` and yields `to_version` (= from_version + 1), atomically. A "
        "gateway already at to_version or later ignores it (re-delivery is harmless); at any other version it "
        "publishes acl/request (reason gap or mismatch) and waits for a snapshot. Within a delta, revocations "
        "and removals are applied before grants, whatever their order.",
    ),
    Channel(
        "command",
        "command",
        "down",
        CommandEnvelope,
        1,
        False,
        "A command, as an MQTT 5 request",
        "Sent with ResponseTopic (under the gateway's own cmd/reply), CorrelationData and MessageExpiryInterval "
        "(until `expires_at`). The gateway refuses an expired command (`expired`) and a command id it has seen "
        "before (`replayed`), and always replies.",
    ),
    Channel(
        "bleKeys",
        "ble_keys",
        "down",
        BleKeyList,
        1,
        True,
        "This gateway's BLE phone keys",
        "Retained, and always the full list with a version: a gateway applies a version above the one it holds "
        "and ignores any other, so re-delivery and the retained copy on every connect are harmless. A key left "
        "out or revoked stops opening doors the moment the list is applied. A list for another site or gateway, "
        "or with a malformed key, is refused whole; the gateway stores the keys sealed (AES-256-GCM).",
    ),
    Channel(
        "commandReply",
        "command_reply",
        "up",
        CommandReply,
        1,
        False,
        "The reply to a command",
        "Published on the command's ResponseTopic (which must lie under this address, e.g. "
        "`.../cmd/reply/{requester}`), or on this address when the command had none, with the command's "
        "CorrelationData.",
    ),
    Channel(
        "events",
        "events",
        "up",
        EventBatch,
        1,
        False,
        "Decisions and alarms, in batches from the gateway's durable outbox",
        "At-least-once: a batch is re-sent until the broker acknowledged it, so consumers de-duplicate by "
        "(site, gateway, seq). seq is per gateway, strictly increasing and never reused: a missing seq is a "
        "lost event. Every event carries the gateway's hash chain.",
    ),
    Channel(
        "aclState",
        "acl_state",
        "up",
        AclState,
        1,
        True,
        "The access-list version in force",
        "Retained; published after every snapshot or delta applied and at start-up.",
    ),
    Channel(
        "aclRequest",
        "acl_request",
        "up",
        SnapshotRequest,
        1,
        False,
        "The gateway asks for a snapshot",
        "At start-up, after a version gap or mismatch, a corrupt or incomplete snapshot, or a resync command. "
        "The backend answers with a snapshot on aclSnapshot.",
    ),
    Channel(
        "status",
        "status",
        "up",
        GatewayStatus,
        1,
        True,
        "Online / offline",
        "Retained. `online: true` after connecting; `online: false` is the connection's last will (the broker "
        "publishes it when the gateway vanishes) and is also published on a clean shutdown.",
    ),
    Channel(
        "telemetry",
        "telemetry",
        "up",
        Telemetry,
        0,
        True,
        "Heartbeat: versions, outbox depth, devices",
        "Retained, QoS 0: only the latest value matters.",
    ),
    Channel(
        "errors",
        "errors",
        "up",
        ErrorReport,
        1,
        False,
        "A down message the gateway refused, and why",
        "Not JSON, schema violation, another site, bad sha-256, too large, unknown command, rejected.",
    ),
    Channel(
        "passTrust",
        "pass_trust",
        "down",
        PassTrustList,
        1,
        True,
        "The site's visitor-pass signing keys",
        "Site-wide (one message for every gateway of the site) and retained, so a gateway that connects later "
        "gets the current list at once. Always the full list: a gateway applies a version above the one it "
        "holds and ignores any other. Keys left out are retired, never forgotten; a key id always names the "
        "same key; a retirement that has passed is final. A list breaking these rules is refused whole.",
    ),
    Channel(
        "passUses",
        "pass_uses",
        "peer",
        PassUses,
        1,
        False,
        "Visitor-pass use counts, shared between the site's gateways",
        "Each gateway publishes its own running count per pass under its own tree, after every use and again "
        "on every connect; every gateway subscribes to menwei/v1/{site}/+/passes/uses and keeps the largest "
        "count per (pass, gateway), so a one-time pass used at one gate is refused at the others. A report "
        "whose `gateway` differs from its topic's is refused.",
    ),
)


def address(topic_attr: str) -> str:
    """The channel address with {site} and {gateway} parameters (or {site} alone for a site-wide topic),
    built by topics.Topics itself."""
    t = Topics("site", "gateway")
    built: str = getattr(t, topic_attr)
    site_wide = f"{PREFIX}/site/{SITE_LEVEL}/"
    if built.startswith(site_wide):
        return PREFIX + "/{site}/" + SITE_LEVEL + "/" + built[len(site_wide) :]
    assert built.startswith(t.base + "/")
    return PREFIX + "/{site}/{gateway}" + built[len(t.base) :]


# --- examples (fixed values: the document must be reproducible) ----------------------------------------------

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
H0 = "0" * 64


def example_document() -> AccessListDocument:
    return AccessListDocument(
        version=42,
        site="harbour-view",
        people=[
            WirePerson(id="p-1001", name="Lin Wei", building="B2", unit="1203", groups=["residents-b2"]),
        ],
        groups=[WireGroup(id="residents-b2", name="Residents, building 2")],
        schedules=[WireSchedule(id="always", name="Always", weekly=[["00:00-24:00"]] * 7)],
        rules=[WireRule(id="r-b2", group="residents-b2", doors=["b2-lobby", "car-park"], schedule="always")],
        credentials=[
            WireCredential(kind=CredentialKind.CARD, value="3735928559", person="p-1001", format="h10301")
        ],
        passes=[
            WirePass(
                id="v-77",
                doors=["b2-lobby"],
                valid_from=T0,
                valid_until=T0 + timedelta(hours=4),
                max_uses=2,
                host_unit="1203",
                label="Courier",
            )
        ],
        holidays=[date(2025, 5, 1)],
    )


def example_chunk() -> SnapshotChunk:
    """One-chunk snapshot of example_document() (gzip with mtime 0, so the bytes are stable)."""
    blob = gzip.compress(example_document().model_dump_json(by_alias=True).encode(), compresslevel=6, mtime=0)
    digest = hashlib.sha256(blob).hexdigest()
    return SnapshotChunk(
        snapshot_id="5f1c0a9e2b7d4c3a8e6f1b2d3c4a5e6f",
        version=42,
        index=0,
        count=1,
        sha256=digest,
        total_sha256=digest,
        data=base64.b64encode(blob).decode(),
        server_time=T0,
    )


def example_events() -> EventBatch:
    records = [
        {"type": "decision", "at": "2025-03-01T08:00:03.120000+00:00", "granted": True, "reason": "granted",
         "reader": "b2-lobby-in", "door": "b2-lobby", "direction": "in", "credential_kind": "card",
         "credential": "3735928559", "person": "p-1001", "pass": None, "apb_violation": False},
        {"type": "alarm", "at": "2025-03-01T08:02:41.000000+00:00", "alarm": "door_held", "active": True,
         "door": "b2-lobby", "device": None, "detail": "open 45 s"},
    ]  # fmt: skip
    ids = ["01955012-7a40-7cc1-9e3b-2f6d1c0b8a11", "01955014-f1a8-7d02-8b5e-64c9a7e3d222"]
    events, prev = [], hashlib.sha256(b"the hash of event 1840").hexdigest()
    for i, (record, eid) in enumerate(zip(records, ids, strict=True)):
        seq = 1841 + i
        h = event_hash(prev, eid, seq, record)
        events.append(UploadedEvent(seq=seq, id=eid, hash=h, prev_hash=prev, event=record))
        prev = h
    return EventBatch(site="harbour-view", gateway="gw-east", events=events)


def examples() -> dict[type[Message], list[tuple[str, Message]]]:
    command = OpenDoor(
        command="open_door",
        id="3f0e5b8c-1d2a-4e6f-9a7b-0c1d2e3f4a5b",
        operator="guard-desk:alice",
        reason="Courier, unit 1203",
        issued_at=T0,
        expires_at=T0 + timedelta(seconds=30),
        door="b2-lobby",
    )
    return {
        SnapshotChunk: [("oneChunk", example_chunk())],
        Delta: [
            (
                "revokeAndGrant",
                Delta(
                    from_version=42,
                    to_version=43,
                    ops=[
                        RevokeCredential(
                            op="revoke_credential", kind=CredentialKind.CARD, value="3735928559"
                        ),
                        UpsertCredential(
                            op="upsert_credential",
                            credential=WireCredential(
                                kind=CredentialKind.CARD, value="3735928560", person="p-1001"
                            ),
                        ),
                        UpsertPass.model_validate(
                            {
                                "op": "upsert_pass",
                                "pass": example_document().passes[0].model_copy(update={"id": "v-78"}),
                            }
                        ),
                    ],
                    server_time=T0,
                ),
            ),
            (
                "revokeQrPass",
                Delta(
                    from_version=43,
                    to_version=44,
                    ops=[
                        RevokePass(op="revoke_pass", id="V-7K2M9QXD4R", valid_until=T0 + timedelta(hours=5))
                    ],
                    server_time=T0 + timedelta(minutes=5),
                ),
            ),
        ],
        CommandEnvelope: [("openDoor", CommandEnvelope(cmd=command))],
        CommandReply: [
            ("ok", CommandReply(id=command.id, ok=True, result={"door": "b2-lobby"})),
            (
                "replayed",
                CommandReply(id=command.id, ok=False, error="replayed", detail="command id already seen"),
            ),
        ],
        EventBatch: [("decisionAndAlarm", example_events())],
        AclState: [("applied", AclState(version=43, applied_at=T0 + timedelta(seconds=2)))],
        SnapshotRequest: [
            ("gap", SnapshotRequest(reason="gap", have_version=41, detail="delta 42->43 at 41"))
        ],
        GatewayStatus: [
            ("online", GatewayStatus(online=True, at=T0, software="menwei 0.1.0")),
            ("lastWill", GatewayStatus(online=False, at=T0, software="menwei 0.1.0")),
        ],
        Telemetry: [
            (
                "heartbeat",
                Telemetry(
                    at=T0,
                    software="menwei 0.1.0",
                    acl_version=43,
                    outbox_depth=0,
                    oldest_pending_at=None,
                    last_upload_at=T0,
                    devices={"b2-lobby-in": DeviceHealth(online=True)},
                ),
            )
        ],
        BleKeyList: [
            (
                "two residents, one phone revoked",
                BleKeyList(
                    site="harbour-view",
                    gateway="gw-east",
                    version=7,
                    keys=[
                        WireBleKey(
                            id="ble-7f3a",
                            person="p-1201",
                            key="000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                        ),
                        WireBleKey(
                            id="ble-19c2",
                            person="p-0803",
                            key="9d4f0c1e5a7b3c2d8e6f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d",
                            status="revoked",
                            valid_until=T0 + timedelta(days=30),
                        ),
                    ],
                    server_time=T0,
                ),
            )
        ],
        PassTrustList: [
            (
                "rotation",
                PassTrustList(
                    site="harbour-view",
                    version=3,
                    keys=[
                        WireTrustedKey(
                            kid="56475aa7",
                            public_key="03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
                            retired_at=T0 + timedelta(days=30),
                        ),
                        WireTrustedKey(
                            kid="34750f98",
                            public_key="8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
                        ),
                        WireTrustedKey(
                            kid="6a3803d5",
                            public_key="8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
                            issuer="gateway:gw-east",
                            state="retired",
                            retired_at=T0 - timedelta(days=2),
                        ),
                    ],
                    server_time=T0,
                ),
            )
        ],
        PassUses: [
            (
                "oneUse",
                PassUses(
                    gateway="gw-east",
                    uses=[PassUseCount.of("V-7K2M9QXD4R", 1, T0 + timedelta(seconds=3, milliseconds=120))],
                ),
            )
        ],
        ErrorReport: [
            (
                "schema",
                ErrorReport(
                    at=T0,
                    topic="menwei/v1/harbour-view/gw-east/acl/delta",
                    error="schema",
                    detail="ops.0.op: unknown operation 'upsert_persn'",
                ),
            )
        ],
    }


# --- the document ----------------------------------------------------------------------------------------------


def schemas() -> dict[str, Any]:
    models = [c.message for c in CHANNELS] + [AccessListDocument]
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    return dict(sorted(defs["$defs"].items()))


def build() -> dict[str, Any]:
    link = LinkSettings(host="", port=0, client_id="")
    offline_will = GatewayStatus(online=False, at=T0, software="menwei 0.1.0")
    params = {
        "site": {"description": f"Site id: one topic level matching {SEGMENT}."},
        "gateway": {
            "description": f"Gateway id, unique within the site: one topic level matching {SEGMENT}."
        },
    }
    site_params = {"site": params["site"]}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    all_examples = examples()
    for c in CHANNELS:
        name = c.message.__name__
        channels[c.key] = {
            "address": address(c.topic),
            "title": c.summary,
            "description": c.description,
            "parameters": params if "{gateway}" in address(c.topic) else site_params,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "x-direction": c.direction,
        }
        op_binding: dict[str, Any] = {"qos": c.qos, "retain": c.retain}
        message: dict[str, Any] = {
            "name": name,
            "title": name,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "examples": [
                {"name": ex_name, "payload": ex.model_dump(mode="json", by_alias=True)}
                for ex_name, ex in all_examples[c.message]
            ],
        }
        msg_binding: dict[str, Any] = {}
        if c.key == "command":
            op_binding["messageExpiryInterval"] = {
                "type": "integer",
                "minimum": 1,
                "description": "Seconds until the command's expires_at; the broker discards it after that.",
            }
            msg_binding = {
                "responseTopic": {
                    "type": "string",
                    "pattern": "^menwei/v1/[a-z0-9][a-z0-9_-]*/[a-z0-9][a-z0-9_-]*/cmd/reply(/.+)?$",
                    "description": "Where to reply: the gateway's cmd/reply or a level under it "
                    "(the cloud kit uses cmd/reply/{its client id}).",
                },
                "correlationData": {
                    "type": "string",
                    "description": "Opaque bytes chosen by the requester (the kit: 16 random bytes), echoed in "
                    "the reply.",
                },
            }
        if c.key == "commandReply":
            msg_binding = {
                "correlationData": {
                    "type": "string",
                    "description": "The command's CorrelationData, unchanged.",
                }
            }
        message["bindings"] = {
            "mqtt": {**msg_binding, "contentType": "application/json", "bindingVersion": BINDING}
        }
        messages[name] = message
        actions = {"down": ["receive"], "up": ["send"], "peer": ["send", "receive"]}[c.direction]
        for action in actions:
            operation: dict[str, Any] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{c.key}"},
                "title": f"{'Gateway receives' if action == 'receive' else 'Gateway sends'}: "
                f"{c.summary[0].lower()}{c.summary[1:]}",
                "messages": [{"$ref": f"#/channels/{c.key}/messages/{name}"}],
                "bindings": {"mqtt": {**op_binding, "bindingVersion": BINDING}},
            }
            if c.key == "command":
                operation["reply"] = {
                    "address": {
                        "location": "$message.header#/responseTopic",
                        "description": "The MQTT 5 ResponseTopic property of the command.",
                    },
                    "channel": {"$ref": "#/channels/commandReply"},
                    "messages": [{"$ref": "#/channels/commandReply/messages/CommandReply"}],
                }
            operations[f"{action}{c.key[0].upper()}{c.key[1:]}"] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "menwei gateway MQTT contract",
            "version": "1.1.0",
            "description": "The MQTT 5 interface between menwei access-control gateways and a property backend. "
            f"Topic prefix `{PREFIX}`: within v1 fields are only ever added as optional; a breaking change gets a "
            "new prefix, served side by side. Prose, examples and rules: docs/contract.md. Generated by "
            "scripts/gen_contract.py from cloud-sync/messages.py and cloud-sync/topics.py; do not edit.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "mqtt.example.com:8883",
                "protocol": "secure-mqtt",
                "protocolVersion": "5",
                "description": "Any MQTT 5 broker with persistent sessions, retained messages and shared "
                "subscriptions (tested with Mosquitto 2.0). Gateways authenticate with a client certificate "
                "(mutual TLS) and/or user name and password; see the recommended ACL in docs/contract.md.",
                "security": [
                    {"$ref": "#/components/securitySchemes/mutualTls"},
                    {"$ref": "#/components/securitySchemes/userPassword"},
                ],
                "bindings": {
                    "mqtt": {
                        "cleanSession": False,
                        "keepAlive": link.keepalive,
                        "sessionExpiryInterval": link.session_expiry,
                        "maximumPacketSize": link.max_payload + 64 * 1024,
                        "lastWill": {
                            "topic": address("status"),
                            "qos": 1,
                            "retain": True,
                            "message": offline_will.model_dump_json(),
                        },
                        "bindingVersion": BINDING,
                    }
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas(),
            "messages": messages,
            "securitySchemes": {
                "mutualTls": {"type": "X509", "description": "Client certificate signed by the site CA."},
                "userPassword": {"type": "userPassword", "description": "MQTT user name and password."},
            },
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the AsyncAPI document of the MQTT contract.")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="fail if the file is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run scripts/gen_contract.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
