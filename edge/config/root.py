"""`GatewayConfig`, the whole file, and the checks between its sections."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from typing import Self

from pydantic import (
    Field,
    model_validator,
)

from edge.config.controllers import ControllerBase, ControllerConfig, FirmwareBridgeController
from edge.config.doors import AntiPassbackConfig, DoorConfig, FireAlarmConfig
from edge.config.fields import Loc, Section, _key_path
from edge.config.readers import FaceCameraReader, FirmwareBridgeReader, ReaderConfig
from edge.config.sections import (
    BackupSection,
    ConsoleSection,
    FaceSection,
    GatewaySection,
    HomeAssistantSection,
    LoggingSection,
    MetricsSection,
    MqttSection,
    PassesSection,
    RetentionSection,
    SecretsSection,
    SiteSection,
    StoreSection,
)
from edge.model import (
    AntiPassbackRule,
    Door,
    Reader,
    Site,
)

# --- the root ----------------------------------------------------------------------------------------------


class CrossCheckError(ValueError):
    """Problems between sections, each with the key it is about. `load_config` prints one line each."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{_key_path(loc)}: {msg}" for loc, msg in self.problems))


class GatewayConfig(Section):
    """The whole config file. Build it with `load_config`, which also resolves `gateway.data_dir`."""

    site: SiteSection = Field(description="The property this gateway serves.")
    gateway: GatewaySection = Field(description="This gateway.")
    store: StoreSection = Field(default_factory=StoreSection, description="The SQLite store.")
    retention: RetentionSection = Field(
        default_factory=RetentionSection, description="How long synced events are kept."
    )
    backup: BackupSection = Field(default_factory=BackupSection, description="Scheduled database backups.")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="Logging.")
    secrets: SecretsSection = Field(
        default_factory=SecretsSection, description="Names of credentials to read; never their values."
    )
    mqtt: MqttSection | None = Field(default=None, description="Cloud link; absent means offline only.")
    metrics: MetricsSection | None = Field(
        default=None, description="Prometheus metrics endpoint; absent means none."
    )
    console: ConsoleSection | None = Field(
        default=None, description="The guard console (web page and REST API); absent means none."
    )
    homeassistant: HomeAssistantSection = Field(
        default_factory=HomeAssistantSection, description="Home Assistant MQTT discovery; off by default."
    )
    passes: PassesSection = Field(default_factory=PassesSection, description="Visitor passes (QR tokens).")
    face: FaceSection | None = Field(
        default=None, description="Face recognition; absent means no face doors."
    )
    controllers: list[ControllerConfig] = Field(default=[], description="Door controllers ([[controllers]]).")
    doors: list[DoorConfig] = Field(default=[], description="Doors ([[doors]]); at least one.")
    readers: list[ReaderConfig] = Field(default=[], description="Credential readers ([[readers]]).")
    anti_passback: list[AntiPassbackConfig] = Field(
        default=[], description="Anti-passback areas ([[anti_passback]])."
    )
    fire_alarms: list[FireAlarmConfig] = Field(
        default=[], description="Fire-alarm inputs and the egress doors they release ([[fire_alarms]])."
    )

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        problems = list(_cross_problems(self))
        if problems:
            raise CrossCheckError(problems)
        return self

    def to_site(self) -> Site:
        """The domain topology: doors, readers and anti-passback rules keyed by id."""
        return Site(
            id=self.site.id,
            timezone=self.site.timezone,
            doors={
                d.id: Door(
                    id=d.id,
                    name=d.name,
                    controller=d.controller,
                    output=d.output,
                    unlock_seconds=d.unlock_seconds,
                    held_seconds=d.held_seconds,
                    lock_type=d.lock_type,
                    mode=d.mode,
                    contact_input=d.contact_input,
                    rex_input=d.rex_input,
                    tamper_input=d.tamper_input,
                )
                for d in self.doors
            },
            readers={
                r.id: Reader(id=r.id, door_id=r.door, direction=r.direction, area=r.area)
                for r in self.readers
            },
            anti_passback={
                a.area: AntiPassbackRule(area=a.area, mode=a.mode, timeout_seconds=a.timeout_seconds)
                for a in self.anti_passback
            },
        )


def _bridge_reader_problems(cfg: GatewayConfig) -> Iterator[tuple[Loc, str]]:
    bridges = {c.id for c in cfg.controllers if isinstance(c, FirmwareBridgeController)}
    for i, r in enumerate(cfg.readers):
        if isinstance(r, FirmwareBridgeReader) and r.controller not in bridges:
            yield ("readers", i, "controller"), f"{r.controller!r} is not a firmware-bridge controller"


def _cross_problems(cfg: GatewayConfig) -> Iterator[tuple[Loc, str]]:
    yield from _duplicates("controllers", "id", "controller", [c.id for c in cfg.controllers])
    yield from _duplicates("doors", "id", "door", [d.id for d in cfg.doors])
    yield from _duplicates("readers", "id", "reader", [r.id for r in cfg.readers])
    yield from _bridge_reader_problems(cfg)
    yield from _duplicates("anti_passback", "area", "anti-passback area", [a.area for a in cfg.anti_passback])
    if not cfg.doors:
        yield ("doors",), "at least one [[doors]] entry is required"
    if cfg.homeassistant.enabled and cfg.homeassistant.use_cloud_broker and cfg.mqtt is None:
        yield ("homeassistant", "use_cloud_broker"), "needs an [mqtt] section to take the broker from"

    controllers: dict[str, ControllerBase] = {}
    for c in cfg.controllers:
        controllers.setdefault(c.id, c)
    outputs: dict[tuple[str, int], int] = {}  # (controller, output) -> index of the first door using it
    inputs: dict[tuple[str, int], Loc] = {}
    for i, door in enumerate(cfg.doors):
        ctrl = controllers.get(door.controller)
        if ctrl is None:
            yield ("doors", i, "controller"), _unknown("controller", door.controller, controllers)
            continue
        if door.output > ctrl.outputs:
            yield (
                ("doors", i, "output"),
                f"controller {ctrl.id!r} has outputs 1..{ctrl.outputs}, not {door.output}",
            )
        else:
            first = outputs.setdefault((ctrl.id, door.output), i)
            if first != i:
                yield (
                    ("doors", i, "output"),
                    f"output {door.output} of controller {ctrl.id!r} is already used by doors[{first}]",
                )
        wired = (
            ("contact_input", door.contact_input),
            ("rex_input", door.rex_input),
            ("tamper_input", door.tamper_input),
        )
        for key, number in wired:
            if number is None:
                continue
            loc: Loc = ("doors", i, key)
            if number > ctrl.inputs:
                yield loc, f"controller {ctrl.id!r} has {_inputs_range(ctrl.inputs)}, not {number}"
                continue
            taken = inputs.setdefault((ctrl.id, number), loc)
            if taken != loc:
                yield loc, f"input {number} of controller {ctrl.id!r} is already used by {_key_path(taken)}"

    door_ids = {d.id for d in cfg.doors}
    for i, fire in enumerate(cfg.fire_alarms):
        ctrl = controllers.get(fire.controller)
        if ctrl is None:
            yield ("fire_alarms", i, "controller"), _unknown("controller", fire.controller, controllers)
        elif fire.input > ctrl.inputs:
            yield ("fire_alarms", i, "input"), f"controller {ctrl.id!r} has {_inputs_range(ctrl.inputs)}"
        elif (used_by := inputs.get((ctrl.id, fire.input))) is not None:
            yield ("fire_alarms", i, "input"), f"input {fire.input} is already used by {_key_path(used_by)}"
        for j, door_id in enumerate(fire.doors):
            if door_id not in door_ids:
                yield ("fire_alarms", i, "doors", j), _unknown("door", door_id, door_ids)
    areas = {a.area for a in cfg.anti_passback}
    for i, reader in enumerate(cfg.readers):
        if reader.door not in door_ids:
            yield ("readers", i, "door"), _unknown("door", reader.door, door_ids)
        if reader.area is not None and reader.area not in areas:
            yield ("readers", i, "area"), f"no [[anti_passback]] entry for area {reader.area!r}"
    used = {r.area for r in cfg.readers}
    for i, rule in enumerate(cfg.anti_passback):
        if rule.area not in used:
            yield ("anti_passback", i, "area"), f"no reader has area {rule.area!r}"
    passes = cfg.passes
    for i, door_id in enumerate(passes.walkin_doors):
        if door_id not in door_ids:
            yield ("passes", "walkin_doors", i), _unknown("door", door_id, door_ids)
    if passes.walkin_hours > passes.walkin_max_hours:
        yield ("passes", "walkin_hours"), f"is more than walkin_max_hours ({passes.walkin_max_hours})"
    if passes.walkin_uses > passes.walkin_max_uses:
        yield ("passes", "walkin_uses"), f"is more than walkin_max_uses ({passes.walkin_max_uses})"
    yield from _face_problems(cfg)


def _face_problems(cfg: GatewayConfig) -> Iterator[tuple[Loc, str]]:
    face_doors = {r.door for r in cfg.readers if isinstance(r, FaceCameraReader)}
    other_doors = {r.door for r in cfg.readers if not isinstance(r, FaceCameraReader)}
    for i, reader in enumerate(cfg.readers):
        if isinstance(reader, FaceCameraReader):
            if cfg.face is None:
                yield ("readers", i, "type"), "a face-camera reader needs a [face] section"
            elif reader.door not in other_doors:
                yield (
                    ("readers", i, "door"),
                    f"door {reader.door!r} needs a non-face reader too (card, PIN, BLE)",
                )
    if cfg.face is not None:
        for i, door_id in enumerate(cfg.face.second_factor_doors):
            if door_id not in face_doors:
                yield ("face", "second_factor_doors", i), f"door {door_id!r} has no face-camera reader"


def _duplicates(section: str, key: str, what: str, ids: Sequence[str]) -> Iterator[tuple[Loc, str]]:
    first: dict[str, int] = {}
    for i, value in enumerate(ids):
        j = first.setdefault(value, i)
        if j != i:
            yield (section, i, key), f"duplicate {what} {value!r} (first at {section}[{j}])"


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {value!r}{hint}"


def _inputs_range(count: int) -> str:
    return f"inputs 1..{count}" if count else "no inputs"
