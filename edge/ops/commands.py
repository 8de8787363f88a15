"""The operator subcommands of `menwei` (status, diagnostics, install-service): their arguments and their
dispatch, so edge/cli.py only registers them (`add_parsers`) and hands over (`ops_main`)."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMANDS = ("status", "diagnostics", "install-service")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="one screen of health; exit 0 healthy, 1 degraded, 2 config error")
    status.add_argument("--config", type=Path, required=True, help="gateway TOML config")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    diag = sub.add_parser("diagnostics", help="write a support bundle (tar.gz) with no personal data")
    diag.add_argument("--config", type=Path, required=True, help="gateway TOML config")
    diag.add_argument(
        "--out",
        type=Path,
        default=None,
        help="bundle path (default: ./menwei-diagnostics-<gateway>-<time>.tar.gz)",
    )

    install = sub.add_parser(
        "install-service", help="install the systemd unit, the menwei user, /etc/menwei and /etc/credstore"
    )
    install.add_argument(
        "--root", type=Path, default=None, help="install under this root (an image); starts nothing"
    )
    install.add_argument("--no-start", action="store_true", help="do not enable and start the service")


def ops_main(args: argparse.Namespace, version: str) -> int:
    if args.command == "status":
        from edge.config import load_config
        from edge.ops.status import print_status

        return print_status(load_config(args.config), version=version, as_json=args.json)
    if args.command == "diagnostics":
        from edge.ops.diagnostics import diagnostics_main

        return diagnostics_main(args.config, args.out, version=version)
    if args.command == "install-service":
        from edge.ops.install import install_main

        return install_main(args.root, start=not args.no_start)
    raise AssertionError(f"not an ops command: {args.command}")
