"""The `menwei` command.

menwei run --config FILE         run the gateway until SIGTERM/SIGINT
menwei demo [--for SECONDS]      the real gateway with simulated devices, through a scripted day
menwei validate-config FILE      check a config file; exit 2 with one line per problem
menwei audit verify --config F   check the event log's hash chain; names the first broken link
menwei face enroll DIR --config F --pack D   enrol face photos (edge/face/cli.py)
menwei console admin NAME --config F   create an admin or reset a lost password (edge/ops/console_admin.py)
menwei firmware update --port P RELEASE      update a door-controller board (firmware-bridge/cli.py)
menwei status --config F [--json]   one screen of health; exit 0 healthy, 1 degraded (edge/ops/status.py)
menwei diagnostics --config F [--out PATH]   a support bundle with no personal data (edge/ops/diagnostics.py)
menwei install-service [--root DIR] [--no-start]   systemd unit, user, /etc/menwei (edge/ops/install.py)
menwei version
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edge.errors import ConfigError

log = logging.getLogger("menwei")

EXIT_CONFIG = 2
EXIT_AUDIT = 3


def package_version() -> str:
    try:
        return version("menwei")
    except PackageNotFoundError:
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="menwei", description="Offline-first access-control gateway")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", type=Path, required=True, help="gateway TOML config")

    demo = sub.add_parser("demo", help="run the gateway with simulated devices through a scripted day")
    demo.add_argument("--for", dest="seconds", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--config", type=Path, default=None, help="config (default: config/demo.toml)")
    demo.add_argument("--data-dir", type=Path, default=None, help="keep the demo's database here")
    demo.add_argument(
        "--pace", type=float, default=1.0, help="scale the pauses of the scripted day (0.3 = faster)"
    )
    demo.add_argument(
        "--console-port",
        type=int,
        default=8080,
        help="serve the guard console on http://127.0.0.1:PORT/ (default 8080; 0: no console)",
    )

    check = sub.add_parser("validate-config", help="validate a config file and exit")
    check.add_argument("file", type=Path)

    audit = sub.add_parser("audit", help="event log audit")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="verify the event log's hash chain")
    src = verify.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="gateway config (uses its data_dir)")
    src.add_argument("--db", type=Path, help="path to menwei.db")

    from edge.face.cli import add_parser as add_face_parser

    add_face_parser(sub)
    from edge.ops.console_admin import add_parser as add_console_parser

    add_console_parser(sub)
    from firmware_bridge.cli import add_parser as add_firmware_parser

    add_firmware_parser(sub)
    from edge.ops.commands import add_parsers as add_ops_parsers

    add_ops_parsers(sub)
    sub.add_parser("version", help="print the version")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from edge.logs import setup_logging

    try:
        if args.command == "version":
            print(f"menwei {package_version()}")
            return 0
        if args.command == "validate-config":
            return _validate(args.file)
        if args.command == "demo":
            setup_logging("warning")
            from edge.demo import demo_main

            return demo_main(args.config, args.seconds, args.data_dir, args.pace, args.console_port or None)
        if args.command == "audit":
            return _audit(args.config, args.db)
        if args.command == "run":
            return _run(args.config)
        if args.command == "console":
            from edge.ops.console_admin import console_main

            return console_main(args)
        if args.command == "face":
            from edge.face.cli import face_main

            return face_main(args)
        if args.command == "firmware":
            from firmware_bridge.cli import firmware_main

            return firmware_main(args)
        from edge.ops import commands as ops

        if args.command in ops.COMMANDS:
            return ops.ops_main(args, package_version())
    except ConfigError as err:
        print(f"menwei: config error:\n{err}", file=sys.stderr)
        return EXIT_CONFIG
    raise AssertionError(f"unhandled command {args.command}")


def _validate(path: Path) -> int:
    from edge.config import load_config

    config = load_config(path)
    print(
        f"{path}: ok (site {config.site.id}, gateway {config.gateway.id}, {len(config.doors)} doors, "
        f"{len(config.readers)} readers, {len(config.controllers)} controllers)"
    )
    return 0


def _audit(config_path: Path | None, db: Path | None) -> int:
    from edge.gateway import DB_NAME
    from edge.store.audit import verify_chain

    if db is None:
        from edge.config import load_config

        assert config_path is not None
        db = load_config(config_path).gateway.data_dir / DB_NAME
    if not db.exists():
        print(f"menwei: no database at {db}", file=sys.stderr)
        return EXIT_AUDIT
    report = verify_chain(db)
    if report.ok:
        print(f"{db}: hash chain ok, {report.checked} events verified")
        for first, last in report.gaps:  # left by the boot check's restore (edge/store/recovery.py)
            print(
                f"  seqs {first}..{last} are not on this gateway: lost with a database restored from backup"
            )
        return 0
    print(f"{db}: hash chain BROKEN at event seq {report.first_broken_seq}: {report.detail}")
    return EXIT_AUDIT


def _run(config_path: Path) -> int:
    from edge.config import load_config
    from edge.devices import build_devices
    from edge.gateway import Gateway
    from edge.logs import setup_logging
    from edge.ops.notify import Notifier

    config = load_config(config_path)
    setup_logging(config.logging.level, config.logging.format)

    async def serve() -> None:
        gateway = Gateway(config, build_devices(config))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        notifier = Notifier.from_env()
        await gateway.start()
        metrics = None
        console = None
        watchdog = None
        sync = None
        homeassistant = None
        try:
            if config.metrics is not None:  # prometheus-client, the `ops` extra, only if asked for
                from edge.ops.metrics import MetricsServer

                metrics = MetricsServer(gateway, config.metrics.address, config.metrics.port)
                metrics.start()  # a taken port fails the start, and systemd says so
            if config.console is not None:  # fastapi and uvicorn, the `console` extra, only if asked for
                from edge.console.server import ConsoleServer

                console = ConsoleServer(gateway, config.console)
                await console.start()  # on this loop; a taken port fails the start
            # The doors decide from here on, with or without the cloud: that is what "ready" means.
            notifier.ready(f"gateway {config.gateway.id}: {len(gateway.runners)} doors")
            watchdog = asyncio.create_task(notifier.keep_alive(stop))
            if config.mqtt is not None:
                from cloud_sync.sync import CloudSync

                sync = CloudSync(gateway, config.mqtt, software_version=package_version())
                await sync.start()
                if console is not None:
                    console.attach_cloud(sync)
                if metrics is not None:
                    metrics.attach_sync(sync)  # connection state and sync lag
            else:
                log.info("no [mqtt] section: running offline only")
            if config.homeassistant.enabled:  # MQTT discovery for the site's Home Assistant, off by default
                from cloud_sync.homeassistant import HomeAssistantBridge

                homeassistant = HomeAssistantBridge(
                    gateway, config.homeassistant, software_version=package_version()
                )
                await homeassistant.start()
            await stop.wait()
        finally:
            notifier.stopping()
            stop.set()
            if watchdog is not None:
                await watchdog
            if console is not None:  # before the gateway: its requests use the gateway
                await console.stop()
            if homeassistant is not None:  # availability offline before the doors stop
                await homeassistant.stop()
            if sync is not None:
                await sync.stop()
            if metrics is not None:
                await asyncio.to_thread(metrics.stop)
            await gateway.stop()
            notifier.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
