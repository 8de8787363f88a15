"""Redaction of secrets and personal data in the logs (edge.redact via edge.logs): unit cases for each rule,
then the real gateway at debug level, text and JSON, through card reads of named people, a pass token, a
secret read from the environment and an exception quoting a card number: none of them reaches stderr."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from drivers.sim.reader import SimulatedReader
from drivers.wiegand.decoder import WiegandError, WiegandFormat
from drivers.wiegand.lines import LineFormat
from edge.config import load_config
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.logs import setup_logging
from edge.model import AccessList, AccessRule, Credential, CredentialKind, Group, Person
from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner
from edge.redact import REDACTED, forget_secrets, redact, register_secret
from edge.secrets import read_secret

ROOT = Path(__file__).resolve().parents[2]

NAMES = ["Ouyang Xiaoming", "Zhuge Liangliang", "Margarethe Quistorp"]
CARDS = ["4811930275", "5512004417", "7300918864"]
SECRET = "mqtt-pw-Zq8xw1T9"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    forget_secrets()


def test_each_rule() -> None:
    register_secret("hunter2-but-longer")
    register_secret(bytes(range(16)))
    cases = {
        "password=hunter2-but-longer in the url": "hunter2-but-longer",
        "key 000102030405060708090a0b0c0d0e0f loaded": "000102030405060708090a0b0c0d0e0f",
        "scanned MW1:6BFOXN*TS0BI$ZD.P9UOL97O4-2HH77HRM3HSPO refused": "6BFOXN",
        "login {'username': 'alice', 'pin': '246810'}": "246810",
        'payload {"card": "4811930275", "door": "gate"}': "4811930275",
        "card_number=4811930275 at gate": "4811930275",
        "connect(mqtt_password='pw-Zq8xw1T9')": "pw-Zq8xw1T9",
        "operator ops.li@property.example opened": "ops.li@property.example",
        "frame 10110011100011110000111100 dropped": "10110011100011110000111100",
        "photo " + "QUJD" * 30: "QUJD" * 30,
        "-----BEGIN PRIVATE KEY-----\nMIIEv...\n-----END PRIVATE KEY-----": "MIIEv",
    }
    for line, secret in cases.items():
        out = redact(line)
        assert secret not in out, (line, out)
    # What operators need stays: ids, doors, versions, reasons.
    kept = "door main-gate: access list version 42 in force, p-zhang granted at main-gate-in (reason granted)"
    assert redact(kept) == kept
    assert redact("password=None") == "password=None"
    logger = "2026-11-25 10:00:00 INFO edge.console.auth: no console admin yet"
    assert redact(logger) == logger  # a logger name ending in a key word is not a key


def test_pydantic_input_values_are_redacted() -> None:
    class Person(BaseModel):
        card: int

    with pytest.raises(ValidationError) as info:
        Person.model_validate({"card": "48119302x75"})
    text = str(info.value)
    assert "48119302x75" in text  # pydantic quotes the input...
    assert "48119302x75" not in redact(text)  # ...the log does not
    assert "input_value=" + REDACTED in redact(text)


def test_a_garbled_wiegand_line_does_not_carry_the_card_into_the_error() -> None:
    with pytest.raises(WiegandError) as info:
        LineFormat("decimal").parse("4811930275?", WiegandFormat.H10301)
    assert "4811930275" not in str(info.value)
    with pytest.raises(WiegandError) as info:
        LineFormat("hex").parse("W26:FFFFFFFFFF", WiegandFormat.H10301)
    assert "FFFFFFFFFF" not in str(info.value)


def population(doors: list[str]) -> AccessList:
    people = [Person(f"p-{i}", name, group_ids=("all",)) for i, name in enumerate(NAMES)]
    cards = [Credential(CredentialKind.CARD, card, f"p-{i}") for i, card in enumerate(CARDS)]
    return AccessList.build(
        version=3,
        people=people,
        groups=[Group("all", "Everyone")],
        rules=[AccessRule("r-all", "all", tuple(doors))],
        credentials=cards,
    )


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_gateway_logs_at_debug_carry_no_card_name_token_or_secret(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_logging("debug", fmt)  # type: ignore[arg-type]
    monkeypatch.setenv("MENWEI_SECRET_MQTT_PASSWORD", SECRET)
    assert read_secret("mqtt-password") is not None
    cfg = load_config(ROOT / "config" / "demo.toml")
    cfg = cfg.model_copy(update={"gateway": cfg.gateway.model_copy(update={"data_dir": tmp_path})})
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    try:
        await gw.replace_access_list(population(list(gw.site.doors)))
        signer = PassSigner.generate()
        now = datetime.now(UTC).replace(microsecond=0)
        token = signer.issue(
            PassClaims(
                pass_id="V-1",
                site="other-site",
                doors=("main-gate",),
                not_before=now - timedelta(hours=1),
                expires=now + timedelta(hours=1),
                issued_at=now - timedelta(hours=1),
            )
        )
        reader = gw.devices.readers["main-gate-in"]
        assert isinstance(reader, SimulatedReader)
        for card in [*CARDS, "9999999999"]:
            reader.present(CredentialKind.CARD, card)
            await asyncio.sleep(0.05)
        reader.present(CredentialKind.PASS, token)
        await asyncio.sleep(0.05)
        log = logging.getLogger("menwei.test")
        log.debug("the secret is %s", SECRET)
        log.info("scanned %s", token)
        try:
            raise ValueError(f"card={CARDS[0]} refused: {{'name': '{NAMES[1]}'}}")
        except ValueError:
            log.exception("handler failed: card=%s", CARDS[1])
    finally:
        await gw.stop()
    err = capsys.readouterr().err
    assert "granted" in err or "decision" in err or "access list version 3" in err  # it did log
    assert "handler failed" in err
    for leaked in [*CARDS, *NAMES, SECRET, token, token[4:40]]:
        assert leaked not in err, leaked
    if fmt == "json":
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert any("exc" in entry for entry in lines)
