"""The published contract is the code's contract: docs/asyncapi.json is current, its schemas accept what the
models accept and refuse what they refuse, and every example in it and in docs/contract.md is valid.

A backend team integrates from these documents alone, so a stale schema or a wrong example is a bug. The
JSON Schemas are checked by a small validator below (jsonschema is not a dependency); it refuses any schema
keyword it does not implement, so it cannot pass a schema by skipping the part it does not understand.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cloud_sync import messages
from cloud_sync.dedupe import event_hash
from cloud_sync.kit import mosquitto_acl
from cloud_sync.snapshot_codec import chunk_bytes_of, decode_snapshot
from cloud_sync.topics import PREFIX, SITE_LEVEL, Topics
from pydantic import BaseModel, ValidationError

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI = ROOT / "docs" / "asyncapi.json"
CONTRACT = ROOT / "docs" / "contract.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_contract", ROOT / "scripts" / "gen_contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is being built
    spec.loader.exec_module(module)
    return module


GEN = load_generator()


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASYNCAPI.read_text(encoding="utf-8"))
    return loaded


def model(name: str) -> type[BaseModel]:
    cls = getattr(messages, name)
    assert isinstance(cls, type) and issubclass(cls, BaseModel)
    return cls


# --- a JSON Schema checker for the keywords pydantic emits --------------------------------------------------

KNOWN = {
    "$ref", "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum",
    "const", "anyOf", "oneOf", "allOf", "format", "default", "title", "description", "discriminator",
}  # fmt: skip


class Checker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, ref: str) -> Any:
        assert ref.startswith("#/"), ref
        node: Any = self.document
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def errors(self, schema: dict[str, Any], value: Any, path: str = "$") -> list[str]:
        unknown = set(schema) - KNOWN
        assert not unknown, f"schema keywords {unknown} at {path} are not implemented by this checker"
        errs: list[str] = []
        if "$ref" in schema:
            errs += self.errors(self.resolve(schema["$ref"]), value, path)
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(t, value) for t in types):
                return [*errs, f"{path}: {value!r} is not of type {types}"]
        if "const" in schema and value != schema["const"]:
            errs.append(f"{path}: {value!r} is not {schema['const']!r}")
        if "enum" in schema and value not in schema["enum"]:
            errs.append(f"{path}: {value!r} is not one of {schema['enum']}")
        if isinstance(value, str):
            errs += _string_errors(schema, value, path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            errs += _number_errors(schema, value, path)
        if isinstance(value, list):
            if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
                errs.append(f"{path}: {len(value)} items is out of bounds")
            for i, item in enumerate(value):
                if "items" in schema:
                    errs += self.errors(schema["items"], item, f"{path}[{i}]")
        if isinstance(value, dict):
            errs += self._object_errors(schema, value, path)
        if "allOf" in schema:
            for sub in schema["allOf"]:
                errs += self.errors(sub, value, path)
        if "anyOf" in schema and all(self.errors(sub, value, path) for sub in schema["anyOf"]):
            errs.append(f"{path}: matches none of anyOf")
        if "oneOf" in schema:
            matching = sum(1 for sub in schema["oneOf"] if not self.errors(sub, value, path))
            if matching != 1:
                errs.append(f"{path}: matches {matching} of oneOf, not exactly one")
        return errs

    def _object_errors(self, schema: dict[str, Any], value: dict[str, Any], path: str) -> list[str]:
        errs = [f"{path}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errs += self.errors(properties[key], item, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unexpected key {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += self.errors(schema["additionalProperties"], item, f"{path}.{key}")
        return errs


def _is_type(name: str, value: Any) -> bool:
    checks = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    return checks[name]


def _string_errors(schema: dict[str, Any], value: str, path: str) -> list[str]:
    errs = []
    if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
        errs.append(f"{path}: length {len(value)} out of bounds")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errs.append(f"{path}: {value!r} does not match {schema['pattern']}")
    fmt = schema.get("format")
    try:
        if fmt == "date-time":
            if datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is None:
                errs.append(f"{path}: date-time without an offset")
        elif fmt == "date":
            date.fromisoformat(value)
        elif fmt is not None:
            raise AssertionError(f"format {fmt!r} at {path} is not implemented by this checker")
    except ValueError:
        errs.append(f"{path}: {value!r} is not a {fmt}")
    return errs


def _number_errors(schema: dict[str, Any], value: float, path: str) -> list[str]:
    bounds: list[tuple[str, Callable[[float], bool]]] = [
        ("minimum", lambda b: value >= b),
        ("maximum", lambda b: value <= b),
        ("exclusiveMinimum", lambda b: value > b),
        ("exclusiveMaximum", lambda b: value < b),
    ]
    return [
        f"{path}: {value} violates {key} {schema[key]}"
        for key, ok in bounds
        if key in schema and not ok(schema[key])
    ]


def leaf(address: str) -> str:
    """The part of a channel address below the gateway (or the site-wide) level."""
    for level in ("{gateway}/", f"{SITE_LEVEL}/"):
        if level in address:
            return address.split(level, 1)[1]
    raise AssertionError(f"{address} is neither a gateway's nor a site-wide topic")


def payload_schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["schemas"][name]
    return schema


# --- the document is current and complete -------------------------------------------------------------------


def test_asyncapi_document_is_current() -> None:
    assert ASYNCAPI.read_text(encoding="utf-8") == GEN.render(), (
        "docs/asyncapi.json is stale: run .venv/bin/python scripts/gen_contract.py"
    )


def test_every_topic_of_the_tree_is_a_channel(doc: dict[str, Any]) -> None:
    topic_attrs = [
        name for name, value in vars(Topics).items() if isinstance(value, property) and name != "base"
    ]
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == {GEN.address(name) for name in topic_attrs}
    site_wide = {a for a in addresses if a.startswith(f"{PREFIX}/{{site}}/{SITE_LEVEL}/")}
    assert site_wide == {f"{PREFIX}/{{site}}/{SITE_LEVEL}/passes/trust"}
    assert all(a.startswith(PREFIX + "/{site}/{gateway}/") for a in addresses - site_wide)
    for channel in doc["channels"].values():
        assert set(channel["parameters"]) == (
            {"site", "gateway"} if "{gateway}" in channel["address"] else {"site"}
        )


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    checker = Checker(doc)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    checker.resolve(value)
                elif key == "mapping":  # discriminator mappings hold references as values
                    for ref in value.values():
                        checker.resolve(ref)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)


def test_operations_state_direction_qos_retain_and_mqtt5_properties(doc: dict[str, Any]) -> None:
    checker = Checker(doc)
    for name, op in doc["operations"].items():
        channel = checker.resolve(op["channel"]["$ref"])
        expected = {"down": {"receive"}, "up": {"send"}, "peer": {"send", "receive"}}[channel["x-direction"]]
        assert op["action"] in expected, name
        binding = op["bindings"]["mqtt"]
        assert binding["qos"] in (0, 1) and isinstance(binding["retain"], bool), name
    by_address = {leaf(c["address"]): key for key, c in doc["channels"].items()}
    bindings = {by_address[topic]: doc["operations"][op]["bindings"]["mqtt"] for topic, op in [
        ("status", "sendStatus"), ("telemetry", "sendTelemetry"), ("acl/state", "sendAclState"),
        ("events", "sendEvents"), ("cmd", "receiveCommand"), ("passes/trust", "receivePassTrust"),
        ("passes/uses", "sendPassUses"),
    ]}  # fmt: skip
    assert bindings["status"]["retain"] and bindings["aclState"]["retain"] and bindings["telemetry"]["retain"]
    assert bindings["telemetry"]["qos"] == 0
    assert bindings["passTrust"] == {"qos": 1, "retain": True, "bindingVersion": "0.2.0"}
    assert bindings["passUses"] == {"qos": 1, "retain": False, "bindingVersion": "0.2.0"}
    assert doc["operations"]["receivePassUses"]["channel"] == {"$ref": "#/channels/passUses"}
    assert bindings["events"] == {"qos": 1, "retain": False, "bindingVersion": "0.2.0"}
    assert bindings["command"]["messageExpiryInterval"]["minimum"] == 1
    command = doc["operations"]["receiveCommand"]
    assert checker.resolve(command["reply"]["channel"]["$ref"])["address"].endswith("/cmd/reply")
    command_binding = doc["components"]["messages"]["CommandEnvelope"]["bindings"]["mqtt"]
    assert {"responseTopic", "correlationData"} <= set(command_binding)
    assert "correlationData" in doc["components"]["messages"]["CommandReply"]["bindings"]["mqtt"]
    server = doc["servers"]["broker"]["bindings"]["mqtt"]
    assert server["cleanSession"] is False and server["sessionExpiryInterval"] > 0
    will = server["lastWill"]
    assert (will["topic"], will["qos"], will["retain"]) == (PREFIX + "/{site}/{gateway}/status", 1, True)
    assert messages.GatewayStatus.model_validate_json(will["message"]).online is False


# --- schemas and examples -----------------------------------------------------------------------------------


def test_examples_in_the_document_satisfy_schema_and_model(doc: dict[str, Any]) -> None:
    checker = Checker(doc)
    for name, message in doc["components"]["messages"].items():
        schema = checker.resolve(message["payload"]["$ref"])
        assert message["examples"], f"{name} has no example"
        for example in message["examples"]:
            assert checker.errors(schema, example["payload"]) == [], (name, example["name"])
            model(name).model_validate(example["payload"])


def test_snapshot_example_decodes_and_event_example_verifies(doc: dict[str, Any]) -> None:
    chunk = messages.SnapshotChunk.model_validate(
        doc["components"]["messages"]["SnapshotChunk"]["examples"][0]["payload"]
    )
    assert decode_snapshot([chunk_bytes_of(chunk)], chunk.total_sha256) == GEN.example_document()
    batch = messages.EventBatch.model_validate(
        doc["components"]["messages"]["EventBatch"]["examples"][0]["payload"]
    )
    prev = batch.events[0].prev_hash
    for ev in batch.events:
        assert ev.prev_hash == prev
        assert event_hash(ev.prev_hash, ev.id, ev.seq, ev.event) == ev.hash
        prev = ev.hash


def broken_variants(payload: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Payloads the contract must refuse, made from a valid one."""
    variants = [{**payload, "surprise": 1}]  # unknown keys are refused
    required = payload_required(name)
    if required:
        variants.append({k: v for k, v in payload.items() if k != required[0]})
    for key, value in payload.items():
        if isinstance(value, str):
            variants.append({**payload, key: [1]})  # wrong type (not 12: pydantic reads a number as a time)
            break
    return variants


def payload_required(name: str) -> list[str]:
    schema = model(name).model_json_schema()
    return list(schema.get("required", []))


def test_schemas_refuse_what_the_models_refuse(doc: dict[str, Any]) -> None:
    checker = Checker(doc)
    for name, message in doc["components"]["messages"].items():
        schema = checker.resolve(message["payload"]["$ref"])
        for bad in broken_variants(message["examples"][0]["payload"], name):
            with pytest.raises(ValidationError):
                model(name).model_validate(bad)
            assert checker.errors(schema, bad), (name, bad)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("Delta", {"from_version": 1, "to_version": 2, "ops": [{"op": "upsert_persn", "person": {}}]}),
        ("Delta", {"from_version": 1, "to_version": 2, "ops": [{"op": "revoke_pass"}]}),
        ("CommandEnvelope", {"cmd": {"command": "self_destruct"}}),
        ("SnapshotChunk", {**GEN.example_chunk().model_dump(mode="json"), "sha256": "abc"}),
        ("EventBatch", {"site": "s", "gateway": "g", "events": []}),
        ("AclState", {"version": 3, "applied_at": "2025-03-01T08:00:00"}),  # no UTC offset
    ],
)
def test_nested_violations_are_refused_by_both(
    doc: dict[str, Any], name: str, payload: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        model(name).model_validate(payload)
    assert Checker(doc).errors(payload_schema(doc, name), payload)


# --- docs/contract.md ---------------------------------------------------------------------------------------

EXAMPLE = re.compile(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", re.DOTALL)


def contract_text() -> str:
    return CONTRACT.read_text(encoding="utf-8")


def test_contract_md_examples_are_valid(doc: dict[str, Any]) -> None:
    checker = Checker(doc)
    found = EXAMPLE.findall(contract_text())
    assert found
    for name, text in found:
        payload = json.loads(text)
        parsed = model(name).model_validate(payload)
        assert checker.errors(payload_schema(doc, name), payload) == [], name
        if isinstance(parsed, messages.SnapshotChunk):  # the example's data really is what it says
            snapshot = decode_snapshot([chunk_bytes_of(parsed)], parsed.total_sha256)
            assert snapshot.version == parsed.version
    documented = {name for name, _ in found}
    assert set(doc["components"]["messages"]) | {"AccessListDocument"} <= documented


def test_contract_md_names_every_topic_and_the_shared_subscription(doc: dict[str, Any]) -> None:
    text = contract_text()
    for channel in doc["channels"].values():
        topic = leaf(channel["address"])
        assert f"`{topic}`" in text, topic
    assert "$share/{group}/menwei/v1/{site}/+/events" in text
    assert "menwei/v1/{site}/{gateway}/" in text


def test_contract_md_acl_is_the_generated_one() -> None:
    match = re.search(r"<!-- acl: (\S+) (\S+) -->\s*```text\n(.*?)```", contract_text(), re.DOTALL)
    assert match, "contract.md has no generated ACL example"
    site, gateway, text = match.groups()
    assert text == mosquitto_acl(site, [gateway])


def test_contract_md_event_hash_example_is_right() -> None:
    match = re.search(r"<!-- hash-example -->\s*```text\n(.*?)```", contract_text(), re.DOTALL)
    assert match
    lines = dict(line.split(" = ", 1) for line in match.group(1).strip().splitlines())
    record = json.loads(lines["payload"])
    assert json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == lines["payload"]
    assert event_hash(lines["prev_hash"], lines["id"], int(lines["seq"]), record) == lines["hash"]
