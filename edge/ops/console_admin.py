"""`menwei console ...`: account recovery on the gateway itself.

    menwei console admin USERNAME --config FILE [--password-stdin]

Makes USERNAME an enabled admin with a new password: creates the account if it does not exist, otherwise
resets its password, enables it and gives it the admin role. It is the way back in when the only admin's
password is lost (the console never has a default password, and its setup code is offered only while no
admin exists). Whoever can run it already holds root or the menwei user on the box, which is the trust the
setup code rests on too. It works while the gateway runs (the account table is written in one short
transaction); sessions already open stay open, and a lock-out in a running console lasts until it expires.
The password is asked twice on a terminal, or read as one line from standard input with --password-stdin.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

EXIT_REFUSED = 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser("console", help="guard console accounts on this gateway")
    console_sub = console.add_subparsers(dest="console_command", required=True)
    admin = console_sub.add_parser(
        "admin", help="create an admin, or reset an account's password and make it an enabled admin"
    )
    admin.add_argument("username", help="account name (lower case letters, digits, '.', '_', '-')")
    admin.add_argument("--config", type=Path, required=True, help="gateway config (its data_dir)")
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the new password as one line from standard input"
    )


def console_main(args: argparse.Namespace) -> int:
    # Imported here: the console's package pulls in FastAPI, which no other command should pay for.
    from edge.config import load_config
    from edge.console.accounts import USERNAME, AccountStore, NoSuchAccountError, Role
    from edge.gateway import DB_NAME

    config = load_config(args.config)
    username = args.username.lower()
    if not USERNAME.fullmatch(username):
        print(f"menwei: {args.username!r} is not a valid account name", file=sys.stderr)
        return EXIT_REFUSED
    min_length = config.console.min_password_length if config.console is not None else 12
    password = _read_password(args.password_stdin)
    if password is None:
        print("menwei: the two passwords differ; nothing changed", file=sys.stderr)
        return EXIT_REFUSED
    if len(password) < min_length:
        print(f"menwei: the password must have at least {min_length} characters", file=sys.stderr)
        return EXIT_REFUSED
    db_path = config.gateway.data_dir / DB_NAME
    if not db_path.is_file():
        print(f"menwei: no database at {db_path}: start the gateway once first", file=sys.stderr)
        return EXIT_REFUSED
    store = AccountStore(db_path)  # opening migrates the schema, as the gateway does at start
    try:
        try:
            store.set_password(username, password)
            store.set_disabled(username, False)
            store.set_role(username, Role.ADMIN)
            done = "password reset; enabled admin"
        except NoSuchAccountError:
            store.create(username, password, Role.ADMIN)
            done = "created as admin"
    finally:
        _keep_owner(db_path)
    # The gateway owns the event log (one writer, one hash chain), so this is logged, not an event; the
    # account's next console login is an audited event like any other.
    log.warning("console account %s %s from the command line", username, done)
    print(f"{username}: {done}")
    return 0


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    second = getpass.getpass("Again: ")
    return first if first == second else None


def _keep_owner(db_path: Path) -> None:
    """Run as root, SQLite may leave a -wal or -shm file owned by root beside the service's database, which the
    menwei user could then not open: hand whatever exists back to the database file's owner."""
    if os.geteuid() != 0:
        return
    owner = db_path.stat()
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        if path.exists():
            os.chown(path, owner.st_uid, owner.st_gid)
