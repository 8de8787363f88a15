"""The config is the gateway's first line of defence against a typo: these tests pin down that every
mistake is caught at start-up and reported with the file and the dotted key, and that the shipped configs
stay valid."""

from __future__ import annotations

import json
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretBytes, SecretStr, ValidationError, field_serializer

from edge.config import (
    DEFAULT_DATA_DIR,
    AntiPassbackConfig,
    BackupSection,
    BleReaderConfig,
    ConsoleSection,
    DoorConfig,
    FaceCameraReader,
    FaceSection,
    FireAlarmConfig,
    FirmwareBridgeController,
    FirmwareBridgeReader,
    GatewayConfig,
    GatewaySection,
    HomeAssistantSection,
    LineScannerReader,
    LoggingSection,
    MetricsSection,
    ModbusProfileConfig,
    ModbusRtuController,
    ModbusTcpController,
    MqttSection,
    OsdpReaderConfig,
    PassesSection,
    QrCameraReader,
    RetentionSection,
    SecretsSection,
    Section,
    SerialScannerReader,
    SimulatedController,
    SimulatedReader,
    SiteSection,
    StoreSection,
    WiegandSerialReader,
    load_config,
    redacted_dict,
)
from edge.errors import ConfigError
from edge.model import AntiPassbackMode, AntiPassbackRule, Direction, Door, DoorMode, LockType, Reader

REPO = Path(__file__).resolve().parents[2]

BASE = """\
[site]
id = "test-site"
name = "Test site"
timezone = "Asia/Shanghai"

[gateway]
id = "gw-1"

[[controllers]]
type = "simulated"
id = "sim"
outputs = 2
inputs = 4

[[doors]]
id = "front"
name = "Front door"
controller = "sim"
output = 1
contact_input = 1

[[readers]]
type = "simulated"
id = "front-in"
door = "front"
direction = "in"
area = "building"

[[readers]]
type = "simulated"
id = "front-out"
door = "front"
direction = "out"
area = "building"

[[anti_passback]]
area = "building"
"""

SECOND_DOOR = """
[[doors]]
id = "back"
name = "Back door"
controller = "sim"
output = 2
"""


@pytest.fixture(autouse=True)
def _no_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test bug: {old!r} not in config"
    return text.replace(old, new, 1)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    """The lines of the ConfigError, with the file name prefix checked and removed."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    prefix = f"{path}: "
    assert all(line.startswith(prefix) for line in lines), lines
    return [line.removeprefix(prefix) for line in lines]


# --- the shipped configs -----------------------------------------------------------------------------------


def test_demo_config_builds_the_demo_site() -> None:
    config = load_config(REPO / "config" / "demo.toml")
    site = config.to_site()

    assert site.timezone == "Asia/Shanghai"
    assert set(site.doors) == {"main-gate", "side-door", "lobby-a"}
    assert site.doors["side-door"].lock_type is LockType.FAIL_SAFE
    gate_readers = {r.direction: r for r in site.readers.values() if r.door_id == "main-gate"}
    assert set(gate_readers) == {Direction.IN, Direction.OUT}
    assert all(r.area == "compound" for r in gate_readers.values())
    for door_id in ("side-door", "lobby-a"):
        assert [r.direction for r in site.readers.values() if r.door_id == door_id] == [Direction.IN]
    assert site.anti_passback == {"compound": AntiPassbackRule("compound", AntiPassbackMode.HARD, 300.0)}

    [controller] = config.controllers
    assert controller.outputs == 4
    for door in site.doors.values():
        assert None not in (door.contact_input, door.rex_input, door.tamper_input), door.id
    assert config.gateway.data_dir == (REPO / "var" / "demo").resolve()


def _config_models(cls: type[BaseModel], found: set[type[BaseModel]] | None = None) -> set[type[BaseModel]]:
    found = set() if found is None else found
    found.add(cls)
    for field in cls.model_fields.values():
        for tp in _flatten(field.annotation):
            if isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in found:
                _config_models(tp, found)
    return found


def _flatten(tp: object) -> Iterator[object]:
    yield tp
    for arg in typing.get_args(tp):
        yield from _flatten(arg)


def _keys_set(model: BaseModel, seen: dict[type[BaseModel], set[str]]) -> None:
    seen.setdefault(type(model), set()).update(model.model_fields_set)
    for name in model.model_fields_set:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                _keys_set(item, seen)


def test_config_models_are_all_found() -> None:
    # Guards the two tests below against a walker that silently finds nothing.
    assert _config_models(GatewayConfig) == {
        GatewayConfig,
        SiteSection,
        GatewaySection,
        StoreSection,
        RetentionSection,
        BackupSection,
        LoggingSection,
        MetricsSection,
        ConsoleSection,
        HomeAssistantSection,
        SecretsSection,
        MqttSection,
        PassesSection,
        SimulatedController,
        FirmwareBridgeController,
        ModbusTcpController,
        ModbusRtuController,
        ModbusProfileConfig,
        DoorConfig,
        SimulatedReader,
        FirmwareBridgeReader,
        QrCameraReader,
        LineScannerReader,
        SerialScannerReader,
        WiegandSerialReader,
        OsdpReaderConfig,
        BleReaderConfig,
        AntiPassbackConfig,
        FireAlarmConfig,
        FaceSection,
        FaceCameraReader,
    }


def test_example_config_loads_and_shows_every_key() -> None:
    config = load_config(REPO / "config" / "menwei.example.toml")
    seen: dict[type[BaseModel], set[str]] = {}
    _keys_set(config, seen)
    for cls in _config_models(GatewayConfig):
        assert seen.get(cls) == set(cls.model_fields), f"example config lacks keys of {cls.__name__}"


def test_every_field_has_a_description() -> None:
    for cls in _config_models(GatewayConfig):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


# --- a valid file ------------------------------------------------------------------------------------------


def test_minimal_config_takes_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.store.synchronous == "full"
    assert (config.logging.level, config.logging.format) == ("info", "text")
    assert config.secrets.pin_key == "pin-key"
    assert config.gateway.data_dir == DEFAULT_DATA_DIR
    door = config.doors[0]
    assert (door.unlock_seconds, door.held_seconds) == (5.0, 30.0)
    assert (door.lock_type, door.mode) == (LockType.FAIL_SECURE, DoorMode.NORMAL)
    assert config.site.zone.key == "Asia/Shanghai"


def test_to_site_builds_domain_objects(tmp_path: Path) -> None:
    site = load_config(write(tmp_path, BASE + SECOND_DOOR)).to_site()
    assert site.id == "test-site"
    assert site.doors == {
        "front": Door(id="front", name="Front door", controller="sim", output=1, contact_input=1),
        "back": Door(id="back", name="Back door", controller="sim", output=2),
    }
    assert site.readers["front-out"] == Reader(
        id="front-out", door_id="front", direction=Direction.OUT, area="building"
    )
    assert site.anti_passback == {"building": AntiPassbackRule("building")}


def test_config_is_read_only(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    with pytest.raises(ValidationError):
        config.site.id = "other"


# --- data_dir ----------------------------------------------------------------------------------------------


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    text = edit(BASE, 'id = "gw-1"\n', 'id = "gw-1"\ndata_dir = "../var/state"\n')
    (etc / "site.toml").write_text(text, encoding="utf-8")
    assert load_config(etc / "site.toml").gateway.data_dir == (tmp_path / "var" / "state").resolve()


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    text = edit(BASE, 'id = "gw-1"\n', 'id = "gw-1"\ndata_dir = "/srv/menwei"\n')
    assert load_config(write(tmp_path, text)).gateway.data_dir == Path("/srv/menwei")


def test_state_directory_overrides_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = edit(BASE, 'id = "gw-1"\n', 'id = "gw-1"\ndata_dir = "/srv/menwei"\n')
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:{tmp_path}/other")
    assert load_config(write(tmp_path, text)).gateway.data_dir == tmp_path / "state"


def test_empty_state_directory_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "")
    assert load_config(write(tmp_path, BASE)).gateway.data_dir == DEFAULT_DATA_DIR


# --- unknown keys, wrong types, bad values -----------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(tmp_path, "colour = 'red'\n" + BASE) == ["colour: unknown key"]


def test_unknown_section(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE + "\n[cloud]\nhost = 'localhost'\n") == ["cloud: unknown key"]


def test_mqtt_section_is_optional_and_checked(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, BASE)).mqtt is None
    mqtt = load_config(write(tmp_path, BASE + "\n[mqtt]\nhost = 'broker.local'\nport = 8883\n")).mqtt
    assert mqtt is not None and (mqtt.host, mqtt.port, mqtt.upload_batch) == ("broker.local", 8883, 500)
    assert problems(tmp_path, BASE + "\n[mqtt]\nport = 0\n") == [
        "mqtt.port: Input should be greater than or equal to 1"
    ]
    assert problems(tmp_path, BASE + "\n[mqtt]\npassword = 'hunter2'\n") == ["mqtt.password: unknown key"]


def test_unknown_nested_key_names_the_list_index(tmp_path: Path) -> None:
    text = BASE + SECOND_DOOR + "unlock_secnds = 3\n"
    assert problems(tmp_path, text) == ["doors[1].unlock_secnds: unknown key"]


def test_unknown_key_in_a_tagged_union_member(tmp_path: Path) -> None:
    # pydantic puts the tag ('simulated') in the error location; the file has no such key.
    text = edit(BASE, "inputs = 4\n", "inputs = 4\ncolour = 'red'\n")
    assert problems(tmp_path, text) == ["controllers[0].colour: unknown key"]


DOOR_LINE = "output = 1\n"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            DOOR_LINE,
            DOOR_LINE + 'unlock_seconds = "five"\n',
            "doors[0].unlock_seconds: Input should be a valid number",
        ),
        (DOOR_LINE, 'output = "1"\n', "doors[0].output: Input should be a valid integer"),
        (DOOR_LINE, "output = true\n", "doors[0].output: Input should be a valid integer"),
        ('name = "Front door"', "name = 5", "doors[0].name: Input should be a valid string"),
        (DOOR_LINE, "output = 0\n", "doors[0].output: Input should be greater than or equal to 1"),
        (
            DOOR_LINE,
            DOOR_LINE + "unlock_seconds = 0.1\n",
            "doors[0].unlock_seconds: Input should be greater than or equal to 0.5",
        ),
        (
            DOOR_LINE,
            DOOR_LINE + "unlock_seconds = nan\n",
            "doors[0].unlock_seconds: Input should be a finite number",
        ),
        (
            DOOR_LINE,
            DOOR_LINE + 'lock_type = "maglock"\n',
            "doors[0].lock_type: Input should be 'fail-safe' or 'fail-secure'",
        ),
        (
            DOOR_LINE,
            DOOR_LINE + 'mode = "open"\n',
            "doors[0].mode: Input should be 'normal', 'locked', 'unlocked' or 'lockdown'",
        ),
        ('direction = "in"', 'direction = "up"', "readers[0].direction: Input should be 'in' or 'out'"),
        ('name = "Front door"\n', "", "doors[0].name: missing required key"),
        ('id = "gw-1"', 'id = "gw-1"\ndata_dir = 5', "gateway.data_dir: should be a path (a string)"),
        ('type = "simulated"\nid = "sim"', 'id = "sim"', "controllers[0].type: missing required key"),
        (
            'type = "simulated"\nid = "sim"',
            'type = "modbus-tpc"\nid = "sim"',
            "controllers[0].type: unknown type 'modbus-tpc'; expected one of: 'simulated', 'firmware-bridge', "
            "'modbus-tcp', 'modbus-rtu'",
        ),
        ("[[doors]]", "[doors]", "doors: should be an array of tables, written [[doors]]"),
        (
            'id = "test-site"',
            'id = "Test Site"',
            "site.id: 'Test Site' is not a valid id: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit",
        ),
        ('id = "front-in"', 'id = "front/in"', "readers[0].id: 'front/in' is not a valid id"),
        ("[site]", "[gateway.x]\n[site]", "gateway.x: unknown key"),
    ],
)
def test_bad_value_is_reported_with_its_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    [line] = problems(tmp_path, edit(BASE, old, new))
    assert line.startswith(expected)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Asia", "asia/shanghai", "localtime", "", "/etc/localtime"])
def test_unknown_timezone(tmp_path: Path, zone: str) -> None:
    text = edit(BASE, 'timezone = "Asia/Shanghai"', f'timezone = "{zone}"')
    assert problems(tmp_path, text) == [
        f"site.timezone: unknown time zone {zone!r}: use an IANA name such as 'Asia/Shanghai'"
    ]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('[store]\nsynchronous = "off"\n', "store.synchronous: Input should be 'full' or 'normal'"),
        ('[logging]\nlevel = "INFO"\n', "logging.level: Input should be 'debug', 'info',"),
        ('[logging]\nformat = "xml"\n', "logging.format: Input should be 'text' or 'json'"),
        ('[secrets]\npin_key = "../shadow"\n', "secrets.pin_key: '../shadow' is not a valid credential name"),
        ('[secrets]\npin_key = "0123abcd"\nvalue = "x"\n', "secrets.value: unknown key"),
    ],
)
def test_bad_optional_sections(tmp_path: Path, section: str, expected: str) -> None:
    [line] = problems(tmp_path, section + BASE)
    assert line.startswith(expected)


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    text = edit(BASE, DOOR_LINE, 'output = "1"\nunlock_secnds = 3\n')
    text = edit(text, 'timezone = "Asia/Shanghai"', 'timezone = "Nowhere"')
    assert problems(tmp_path, text) == [
        "site.timezone: unknown time zone 'Nowhere': use an IANA name such as 'Asia/Shanghai'",
        "doors[0].output: Input should be a valid integer",
        "doors[0].unlock_secnds: unknown key",
    ]


# --- file-level errors -------------------------------------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    lines = BASE.splitlines()
    lines.insert(2, "name =")  # becomes line 3
    [line] = problems(tmp_path, "\n".join(lines))
    assert line.startswith("line 3, column 7: invalid TOML: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"^{path}: cannot read config file: No such file"):
        load_config(path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_bytes(b"# \xff\n" + BASE.encode())
    with pytest.raises(ConfigError, match=f"^{path}: not UTF-8 text"):
        load_config(path)


# --- cross-checks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BASE + SECOND_DOOR.replace('"back"', '"front"'),
            "doors[1].id: duplicate door 'front' (first at doors[0])",
        ),
        (
            BASE + '[[readers]]\ntype = "simulated"\nid = "front-in"\ndoor = "front"\n',
            "readers[2].id: duplicate reader 'front-in' (first at readers[0])",
        ),
        (
            BASE + '[[controllers]]\ntype = "simulated"\nid = "sim"\noutputs = 1\ninputs = 0\n',
            "controllers[1].id: duplicate controller 'sim' (first at controllers[0])",
        ),
        (
            BASE + '[[anti_passback]]\narea = "building"\n',
            "anti_passback[1].area: duplicate anti-passback area 'building' (first at anti_passback[0])",
        ),
        (
            BASE + '[[readers]]\ntype = "simulated"\nid = "gate-in"\ndoor = "gate-x"\n',
            "readers[2].door: unknown door 'gate-x'",
        ),
        (
            edit(BASE, 'controller = "sim"', 'controller = "simm"'),
            "doors[0].controller: unknown controller 'simm'; did you mean 'sim'?",
        ),
        (edit(BASE, DOOR_LINE, "output = 3\n"), "doors[0].output: controller 'sim' has outputs 1..2, not 3"),
        (
            BASE + SECOND_DOOR.replace("output = 2", "output = 1"),
            "doors[1].output: output 1 of controller 'sim' is already used by doors[0]",
        ),
        (
            edit(BASE, "contact_input = 1", "contact_input = 5"),
            "doors[0].contact_input: controller 'sim' has inputs 1..4, not 5",
        ),
        (
            BASE + SECOND_DOOR + "rex_input = 1\n",
            "doors[1].rex_input: input 1 of controller 'sim' is already used by doors[0].contact_input",
        ),
        (
            edit(BASE, "contact_input = 1", "contact_input = 1\ntamper_input = 1"),
            "doors[0].tamper_input: input 1 of controller 'sim' is already used by doors[0].contact_input",
        ),
        (
            BASE + '[[anti_passback]]\narea = "garage"\nmode = "soft"\n',
            "anti_passback[1].area: no reader has area 'garage'",
        ),
        (
            edit(BASE, 'area = "building"', 'area = "garage"'),
            "readers[0].area: no [[anti_passback]] entry for area 'garage'",
        ),
        (
            BASE.split("[[doors]]")[0],
            "doors: at least one [[doors]] entry is required",
        ),
    ],
)
def test_cross_check(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_cross_checks_report_every_problem(tmp_path: Path) -> None:
    text = edit(BASE, DOOR_LINE, "output = 3\n") + '[[anti_passback]]\narea = "garage"\n'
    text = edit(text, 'door = "front"\ndirection = "out"', 'door = "frnt"\ndirection = "out"')
    assert problems(tmp_path, text) == [
        "doors[0].output: controller 'sim' has outputs 1..2, not 3",
        "readers[1].door: unknown door 'frnt'; did you mean 'front'?",
        "anti_passback[1].area: no reader has area 'garage'",
    ]


def test_cross_checks_run_without_load_config_too() -> None:
    data = tomllib.loads(edit(BASE, 'controller = "sim"', 'controller = "nope"'))
    with pytest.raises(ValidationError, match=r"doors\[0\]\.controller: unknown controller 'nope'"):
        GatewayConfig.model_validate(data)


# --- logging the config ------------------------------------------------------------------------------------


def test_redacted_dict_of_the_config_is_plain_json(tmp_path: Path) -> None:
    dumped = redacted_dict(load_config(write(tmp_path, BASE)))
    assert json.loads(json.dumps(dumped)) == dumped
    assert dumped["gateway"] == {"id": "gw-1", "data_dir": str(DEFAULT_DATA_DIR)}
    assert dumped["doors"][0]["lock_type"] == "fail-secure"
    assert dumped["controllers"][0]["type"] == "simulated"
    assert dumped["readers"][0]["area"] == "building"


class _Credentials(Section):
    token: SecretStr = Field(description="an API token")
    keys: list[SecretBytes] = Field(description="binary keys")

    @field_serializer("token")
    def _reveal(self, value: SecretStr) -> str:  # a careless serializer: the redaction must not trust it
        return value.get_secret_value()


class _WithSecrets(Section):
    name: str = Field(description="not secret")
    credentials: _Credentials = Field(description="nested secrets")
    by_host: dict[str, SecretStr] = Field(description="secrets in a mapping")


def test_redacted_dict_masks_every_secret_field() -> None:
    model = _WithSecrets(
        name="visible",
        credentials=_Credentials(token=SecretStr("tok-hunter2"), keys=[SecretBytes(b"key-hunter2")]),
        by_host={"broker": SecretStr("pw-hunter2")},
    )
    assert "hunter2" in json.dumps(model.model_dump(mode="json"))  # the serializer above leaks...
    dumped = redacted_dict(model)  # ...the redacted dump does not
    assert "hunter2" not in json.dumps(dumped)
    assert dumped == {
        "name": "visible",
        "credentials": {"token": "**********", "keys": ["**********"]},
        "by_host": {"broker": "**********"},
    }
