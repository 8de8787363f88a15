"""`menwei console admin`: the way back in when the only admin's password is lost, run as a real command on a
real gateway database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.console.accounts import AccountStore, Role
from edge.store.db import open_db

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo.toml"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "menwei.toml"
    path.write_text(DEMO.read_text().replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path}"'))
    open_db(tmp_path / "menwei.db").close()  # the database a gateway leaves after its first start
    return path


def admin(config: Path, username: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "console",
            "admin",
            username,
            "--config",
            str(config),
            "--password-stdin",
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_creates_the_first_admin(config: Path) -> None:
    store = AccountStore(config.parent / "menwei.db")
    assert not store.has_admin()
    done = admin(config, "Chief", NEW_PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "chief: created as admin" in done.stdout
    assert store.has_admin()
    assert store.verify("chief", NEW_PASSWORD) is not None
    assert NEW_PASSWORD not in done.stdout + done.stderr


def test_resets_a_lost_password_and_makes_the_account_an_enabled_admin(config: Path) -> None:
    store = AccountStore(config.parent / "menwei.db")
    store.create("boss", "the old forgotten one", Role.ADMIN)
    store.create("night", "guard password one", Role.GUARD)
    store.set_disabled("night", True)
    done = admin(config, "night", NEW_PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "password reset; enabled admin" in done.stdout
    check = store.check_login("night", NEW_PASSWORD)
    assert check.account is not None and check.account.role is Role.ADMIN
    assert store.verify("night", "guard password one") is None
    assert store.verify("boss", "the old forgotten one") is not None  # nobody else touched


def test_refuses_a_short_password_or_a_bad_name_and_changes_nothing(config: Path) -> None:
    store = AccountStore(config.parent / "menwei.db")
    short = admin(config, "chief", "short")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    bad = admin(config, "no spaces allowed", NEW_PASSWORD)
    assert bad.returncode == 1 and "not a valid account name" in bad.stderr
    assert store.all_accounts() == []


def test_refuses_without_a_gateway_database(tmp_path: Path) -> None:
    path = tmp_path / "menwei.toml"
    path.write_text(DEMO.read_text().replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path / "none"}"'))
    done = admin(path, "chief", NEW_PASSWORD)
    assert done.returncode == 1 and "start the gateway once first" in done.stderr
    assert not (tmp_path / "none" / "menwei.db").exists()
