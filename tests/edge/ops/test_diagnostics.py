"""`menwei diagnostics`: a bundle taken from a running gateway whose database is full of named people with
cards holds their counts and none of their names or card numbers; the config loses its usernames but keeps
hosts and credential names; the journal goes through the log redaction."""

from __future__ import annotations

import asyncio
import json
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.reader import CredentialRead
from edge.cli import main
from edge.config import load_config
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import AccessList, AccessRule, Credential, CredentialKind, Group, Person, VisitorPass
from edge.ops.diagnostics import redact_config, write_bundle
from edge.ops.metrics import MetricsServer
from edge.redact import REDACTED

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo.toml"

GIVEN = ["Xiaoming", "Guilan", "Hongwei", "Meiling", "Jianguo", "Yuhua", "Margarethe", "Oluwaseun"]
FAMILY = ["Ouyang", "Zhuge", "Sima", "Quistorp", "Adeyemi", "Murakami"]
N_PEOPLE = len(GIVEN) * len(FAMILY)
TOKEN = "MW1:6BFOXN*TS0BI$ZD.P9UOL97O4-2HH77HRM3HSPO"


def population(doors: list[str]) -> tuple[AccessList, list[str], list[str]]:
    names = [f"{g} {f}" for f in FAMILY for g in GIVEN]
    cards = [str(4_811_930_000 + 7919 * i) for i in range(N_PEOPLE)]
    people = [Person(f"p-{i}", name, group_ids=("all",)) for i, name in enumerate(names)]
    creds = [Credential(CredentialKind.CARD, card, f"p-{i}") for i, card in enumerate(cards)]
    now = datetime.now(UTC).replace(microsecond=0)
    visitor = VisitorPass(
        "V-1", tuple(doors), now, now.replace(year=now.year + 1), label="Ms. Quistorp-Visitor"
    )
    acl = AccessList.build(
        version=11,
        people=people,
        groups=[Group("all", "Everyone")],
        rules=[AccessRule("r-all", "all", tuple(doors))],
        credentials=creds,
        passes=[visitor],
    )
    return acl, names, cards


def write_config(tmp_path: Path, metrics_port: int) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        DEMO.read_text().replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path / "data"}"')
        + f"\n[metrics]\nport = {metrics_port}\n"
        + '\n[mqtt]\nhost = "broker.lotus.example"\nusername = "gw-user-ouyang"\n'
        + 'password_credential = "mqtt-password"\n'
    )
    return config


async def test_bundle_from_a_running_gateway_holds_no_personal_data(tmp_path: Path) -> None:
    probe = load_config(DEMO)
    cfg = probe.model_copy(
        update={"gateway": probe.gateway.model_copy(update={"data_dir": tmp_path / "data"})}
    )
    gw = Gateway(cfg, build_devices(cfg))
    await gw.start()
    server = MetricsServer(gw, "127.0.0.1", 0)
    server.start()
    try:
        acl, names, cards = population(list(gw.site.doors))
        await gw.replace_access_list(acl)
        for card in [*cards[:5], "9999999999"]:
            gw.present(CredentialRead("main-gate-in", CredentialKind.CARD, card))
        gw.present(CredentialRead("main-gate-in", CredentialKind.PASS, TOKEN))
        assert gw.events is not None
        await asyncio.to_thread(gw.events.flush)
        config = write_config(tmp_path, server.port)
        journal = [
            sys.executable,
            "-c",
            f"print('reader main-gate-in: card={cards[0]} granted')\nprint('scanned {TOKEN}')\n"
            "print('mqtt password: s3cret-pw-Zq8 refused')\nprint('gateway gw-demo started with 3 doors')",
        ]
        out = tmp_path / "bundle.tar.gz"
        path = await asyncio.to_thread(write_bundle, config, out, version="9.9", journal=journal)
    finally:
        await asyncio.to_thread(server.stop)
        await gw.stop()

    assert path == out and (out.stat().st_mode & 0o777) == 0o600
    with tarfile.open(out) as tar:
        members = {
            Path(m.name).name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }
    assert set(members) >= {
        "system.json",
        "config.json",
        "status.json",
        "database.json",
        "journal.txt",
        "metrics.txt",
        "README.txt",
    }
    everything = "\n".join(members.values())
    for secret in [*names, *(n.split()[1] + " " for n in names[:3]), *cards, TOKEN[4:], "s3cret-pw-Zq8"]:
        assert secret not in everything, secret
    assert "Quistorp-Visitor" not in everything and "gw-user-ouyang" not in everything

    db = json.loads(members["database.json"])
    assert db["rows"]["people"] == N_PEOPLE and db["rows"]["credentials"] == N_PEOPLE
    assert db["quick_check"] == "ok" and db["schema_version"] >= 6
    config_out = json.loads(members["config.json"])
    assert config_out["mqtt"]["host"] == "broker.lotus.example"
    assert config_out["mqtt"]["username"] == REDACTED
    assert config_out["mqtt"]["password_credential"] == "mqtt-password"
    status = json.loads(members["status.json"])
    assert status["access_list"]["people"] == N_PEOPLE
    assert status["live"]["devices"]["sim-1"] is True
    assert "menwei_decisions_total" in members["metrics.txt"]
    assert "gateway gw-demo started with 3 doors" in members["journal.txt"]
    system = json.loads(members["system.json"])
    assert system["menwei"] == "9.9" and "pydantic" in {k.lower() for k in system["packages"]}


def test_config_redaction_keeps_names_of_credentials_and_hosts() -> None:
    raw = {
        "site": {"id": "lotus", "name": "Lotus Garden"},
        "secrets": {"pin_key": "pin-key"},
        "mqtt": {"host": "10.0.0.5", "username": "ops@lotus.example", "password_credential": "mqtt-pw"},
        "readers": [{"id": "cam", "source": "rtsp://gate-cam@192.168.10.21:554/stream1", "walkin_key": "x"}],
    }
    out = redact_config(raw)
    assert out["site"] == raw["site"] and out["secrets"] == raw["secrets"]
    assert out["mqtt"] == {"host": "10.0.0.5", "username": REDACTED, "password_credential": "mqtt-pw"}
    assert out["readers"][0]["source"] == f"rtsp://{REDACTED}@192.168.10.21:554/stream1"
    assert out["readers"][0]["walkin_key"] == REDACTED


def test_cli_writes_a_bundle_even_for_a_config_that_does_not_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\nid = "x"\n[mqtt]\nusername = "someone-private"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["diagnostics", "--config", str(bad), "--out", str(tmp_path / "b.tar.gz")]) == 0
    assert "support bundle written" in capsys.readouterr().out
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        names = {Path(m.name).name for m in tar.getmembers()}
        readme = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("README.txt")))
        assert readme is not None
        text = readme.read().decode()
    assert "status.json" not in names and "config.json" in names
    assert "does not validate" in text
