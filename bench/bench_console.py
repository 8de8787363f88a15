"""The guard console under load, and whether it slows the doors (issue #8).

In this process: the real gateway (simulated devices, a big synthetic access list) and the console served as
`menwei run` serves it (edge.console.server.ConsoleServer: uvicorn on the gateway's own event loop), on plain
HTTP on a free loopback port. A reader thread presents valid cards at a steady rate and hands each read to the
loop with call_soon_threadsafe, as the Wiegand, OSDP and QR drivers do; the time from the read to the relay
command reaching the simulated controller is the decision latency.

In a second process: N logged-in clients (httpx, one connection each) looping (by default with no think time) over
the console's read-only endpoints (GET /api/doors, /api/events?limit=50, /api/session, and /api/health and
/api/alarms when the app has them), plus a few clients holding the live feed (/api/events/stream) open. Nothing
that fires a relay: opening doors from the console would change what is measured.

Phases, one run: the clients log in (not measured), then windows without load (baseline) and with load alternate,
starting without, so that other work on a shared machine falls on both conditions alike. Prints the decision
latency without and with load and their ratio, the console's latency per endpoint as the clients saw it and
inside the app, and the live feed's lag.

    .venv/bin/python bench/bench_console.py [--quick] [--clients 50] [--streams 5] [--seconds 40]
        [--windows 4] [--think 0] [--rate 50] [--people 100000] [--switch-interval SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import importlib.util
import itertools
import json
import multiprocessing
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from synthetic import CARD_BASE, big_access_list

from drivers.sim.door_controller import SimulatedDoorController
from drivers.sim.reader import SimulatedReader
from edge.config import ConsoleSection, load_config
from edge.console import ConsoleSettings, create_app
from edge.console.accounts import AccountStore, Role
from edge.console.server import ConsoleServer
from edge.devices import build_devices
from edge.gateway import Gateway
from edge.model import CredentialKind

ROOT = Path(__file__).resolve().parent.parent
GUARD, ADMIN, PASSWORD = "bench-guard", "bench-admin", "bench-password-long-enough"
STREAM_PATH = "/api/events/stream"
# Read-only endpoints and how often a client picks each; optional ones only if the app has them.
MIX = {"/api/doors": 3, "/api/events?limit=50": 3, "/api/session": 2, "/api/health": 1, "/api/alarms": 1}
OPTIONAL = {"/api/health", "/api/alarms"}
CONDITIONS = {"baseline": "no console load (baseline)", "load": "under console load"}


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# --- the gateway side ---------------------------------------------------------------------------------------


class Phase:
    """What is going on now; read by the feeder thread and the timing middleware (a str swap is atomic)."""

    def __init__(self) -> None:
        self.name = "warmup"
        self.changes: list[tuple[float, str]] = [(0.0, self.name)]  # (monotonic, name)

    def set(self, name: str) -> None:
        self.name = name
        self.changes.append((time.monotonic(), name))

    def at(self, mono: float) -> str:
        """The phase at a moment (CLOCK_MONOTONIC is the same in every process of the machine)."""
        return self.changes[bisect.bisect_right(self.changes, mono, key=lambda change: change[0]) - 1][1]


@dataclass(frozen=True, slots=True)
class Read:
    phase: str
    read: float  # monotonic, in the reader thread, before the hand-over
    on_loop: float  # monotonic, when the loop ran the hand-over (Gateway.present starts)


@dataclass
class CardFeeder:
    """A reader thread: `rate` valid cards per second, each handed to the loop as the real drivers do."""

    loop: asyncio.AbstractEventLoop
    reader: SimulatedReader
    cards: list[str]
    rate: float
    phase: Phase
    reads: list[Read] = field(default_factory=list)  # appended on the loop only
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="card-feeder", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        await asyncio.sleep(0.2)  # the last relay writes

    def _run(self) -> None:
        period = 1.0 / self.rate
        due = time.monotonic()
        for i in itertools.count():
            due += period
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if delay <= 0:
                due = time.monotonic()  # fell behind: no burst to catch up
            if self._stop.is_set():
                return
            self.loop.call_soon_threadsafe(
                self._present, self.cards[i % len(self.cards)], time.monotonic(), self.phase.name
            )

    def _present(self, card: str, read: float, phase: str) -> None:
        self.reads.append(Read(phase, read, time.monotonic()))
        self.reader.present(CredentialKind.CARD, card)


class TimedApp:
    """ASGI middleware, outermost: how long each request spends inside the console app (server side), by
    phase, into `samples`."""

    def __init__(self, app: ASGIApp, phase: Phase, samples: dict[str, list[float]]) -> None:
        self.app = app
        self.phase = phase
        self.samples = samples

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == STREAM_PATH:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        await self.app(scope, receive, send)
        self.samples[self.phase.name].append(time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_accounts(db_path: Path) -> None:
    store = AccountStore(db_path)
    store.create(ADMIN, PASSWORD, Role.ADMIN)  # an admin exists, so no setup code is logged
    store.create(GUARD, PASSWORD, Role.GUARD)


# --- the bystander: how much the machine itself delays a process ------------------------------------------


def noise_probe(conn: Connection, period: float = 0.02) -> None:
    """Sleep `period` over and over until told to stop; send back (due, oversleep) pairs. A process that does
    nothing: its lateness is the OS scheduler's, the same for the gateway's threads on this shared machine."""
    samples: list[tuple[float, float]] = []
    due = time.monotonic()
    while not conn.poll():
        due += period
        time.sleep(max(0.0, due - time.monotonic()))
        now = time.monotonic()
        samples.append((due, now - due))
        due = max(due, now - period)  # after a long stall, no burst
    conn.send(samples)
    conn.close()


# --- the load generator (second process) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadPlan:
    port: int
    clients: int
    streams: int
    seconds: float  # with load, in all; as long again without
    windows: int  # how many times the load is switched on
    think: float  # pause between a client's requests
    paths: dict[str, int]  # path -> weight


def load_process(plan: LoadPlan, conn: Connection) -> None:
    try:
        result = asyncio.run(generate_load(plan, conn))
    except BaseException as err:
        conn.send(("error", f"{type(err).__name__}: {err}"))
        raise
    conn.send(("result", result))
    conn.close()


async def generate_load(plan: LoadPlan, conn: Connection) -> dict[str, Any]:
    base = f"http://127.0.0.1:{plan.port}"
    clients = [httpx.AsyncClient(base_url=base, timeout=30.0) for _ in range(plan.clients + plan.streams)]
    gate = asyncio.Semaphore(4)  # argon2 is memory-hard: a few logins at a time

    async def log_in(client: httpx.AsyncClient) -> None:
        async with gate:
            response = await client.post("/api/login", json={"username": GUARD, "password": PASSWORD})
        response.raise_for_status()

    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lag: list[float] = []
    paths, weights = list(plan.paths), list(plan.paths.values())

    async def loop_requests(client: httpx.AsyncClient, rng: random.Random, deadline: float) -> None:
        if plan.think:  # paced clients start at random moments, not all at once at the window's start
            await asyncio.sleep(rng.uniform(0.0, plan.think))
        while time.monotonic() < deadline:
            path = rng.choices(paths, weights)[0]
            t0 = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.HTTPError as err:
                errors[f"{path}: {type(err).__name__}"] += 1
                continue
            elapsed = time.perf_counter() - t0
            if response.status_code != 200:
                errors[f"{path}: HTTP {response.status_code}"] += 1
            latencies[path].append(elapsed)
            if plan.think:
                pause = plan.think * rng.uniform(0.5, 1.5)
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    async def hold_stream(client: httpx.AsyncClient, deadline: float) -> None:
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                async with client.stream("GET", STREAM_PATH) as response:
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            at = datetime.fromisoformat(json.loads(line[6:])["at"])
                            lag.append((datetime.now(UTC) - at).total_seconds())
        except TimeoutError:
            pass
        except httpx.HTTPError as err:
            errors[f"{STREAM_PATH}: {type(err).__name__}"] += 1

    try:
        await asyncio.gather(*(log_in(c) for c in clients))
        rngs = [random.Random(i) for i in range(plan.clients)]
        window = plan.seconds / plan.windows
        on_seconds = cpu = 0.0
        # Windows without and with load alternate, so that the other work on a shared machine falls on both.
        for k in range(plan.windows):
            conn.send(("off", k))
            await asyncio.sleep(window)
            conn.send(("on", k))
            started, cpu0 = time.monotonic(), time.process_time()
            deadline = started + window
            await asyncio.gather(
                *(loop_requests(c, r, deadline) for c, r in zip(clients, rngs, strict=False)),
                *(hold_stream(c, deadline) for c in clients[plan.clients :]),
            )
            on_seconds += time.monotonic() - started
            cpu += time.process_time() - cpu0
        return {
            "client_cpu": cpu / on_seconds,
            "latencies": dict(latencies),
            "errors": dict(errors),
            "lag": lag,
            "elapsed": on_seconds,
        }
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


# --- the run ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Results:
    decision: dict[str, list[float]]  # condition -> read -> relay
    on_loop: dict[str, list[float]]  # condition -> present -> relay
    oversleep: dict[str, list[float]]  # condition -> how late the bystander process woke up
    window_p99: dict[str, list[float]]  # condition -> p99 of read -> relay in each window
    unmatched: int  # reads without a relay pulse, or the other way round
    load: dict[str, Any]  # what the load process measured
    server: list[float]  # time inside the app, under load
    paths: list[str]


async def run(args: argparse.Namespace) -> Results:
    config = load_config(ROOT / "config" / "demo.toml")
    phase = Phase()
    with tempfile.TemporaryDirectory() as tmp:
        config = config.model_copy(
            update={"gateway": config.gateway.model_copy(update={"data_dir": Path(tmp)})}
        )
        gw = Gateway(config, build_devices(config))
        await gw.start()
        console: ConsoleServer | None = None
        feeder: CardFeeder | None = None
        probe: BaseProcess | None = None
        try:
            doors = list(gw.site.doors)
            await gw.replace_access_list(big_access_list(args.people, doors, datetime.now(UTC)))
            await asyncio.to_thread(create_accounts, gw.db_path)
            # A reader without anti-passback: every read of a valid card is granted and pulses the relay.
            reader_id = next(r.id for r in gw.site.readers.values() if r.area is None)
            door = gw.site.doors[gw.site.readers[reader_id].door_id]
            reader = gw.devices.readers[reader_id]
            controller = gw.devices.controllers[door.controller]
            assert isinstance(reader, SimulatedReader)
            assert isinstance(controller, SimulatedDoorController)
            controller.max_history = 10**9  # keep every write: reads and pulses are matched in order

            # Served as `menwei run` serves it (ConsoleServer: uvicorn on this loop), on plain HTTP on loopback.
            server_samples: dict[str, list[float]] = defaultdict(list)

            def timed_app(gateway: Gateway, settings: ConsoleSettings) -> FastAPI:
                app = create_app(gateway, settings)
                app.add_middleware(TimedApp, phase=phase, samples=server_samples)
                return app

            console = ConsoleServer(
                gw, ConsoleSection(address="127.0.0.1", port=free_port()), app_factory=timed_app
            )
            port = (await console.start()).port
            assert console.app is not None
            have = {path for path, ops in console.app.openapi()["paths"].items() if "get" in ops}
            paths = {p: w for p, w in MIX.items() if p not in OPTIONAL or p in have}

            rng = random.Random(3)
            cards = [str(CARD_BASE + rng.randrange(2 * args.people)) for _ in range(10_000)]
            feeder = CardFeeder(asyncio.get_running_loop(), reader, cards, args.rate, phase)
            feeder.start()
            ctx = multiprocessing.get_context("spawn")
            probe_conn, probe_end = ctx.Pipe()
            probe = ctx.Process(target=noise_probe, args=(probe_end,), name="noise-probe")
            probe.start()
            probe_end.close()
            await asyncio.sleep(1.0)  # warm-up, not measured

            phase.set("login")
            plan = LoadPlan(port, args.clients, args.streams, args.seconds, args.windows, args.think, paths)
            ours, theirs = ctx.Pipe()
            process = ctx.Process(target=load_process, args=(plan, theirs), name="console-load")
            process.start()
            theirs.close()
            load: dict[str, Any] = {}
            # This process's CPU time and wall time in each condition (card reads, event log and all).
            cpu: dict[str, float] = defaultdict(float)
            wall: dict[str, float] = defaultdict(float)
            since = (time.process_time(), time.monotonic())
            try:
                while True:
                    kind, payload = await asyncio.to_thread(ours.recv)
                    condition = phase.name.split(":")[0]
                    cpu[condition] += time.process_time() - since[0]
                    wall[condition] += time.monotonic() - since[1]
                    since = (time.process_time(), time.monotonic())
                    if kind == "off":
                        phase.set(f"baseline:{payload}")
                    elif kind == "on":
                        phase.set(f"load:{payload}")
                    elif kind == "result":
                        load = payload
                        load["server_cpu"] = {c: cpu[c] / wall[c] for c in CONDITIONS}
                        break
                    else:
                        raise RuntimeError(f"the load process failed: {payload}")
            finally:
                phase.set("done")
                await asyncio.to_thread(process.join, 30)
            await feeder.stop()
            probe_conn.send("stop")
            oversleep: dict[str, list[float]] = defaultdict(list)
            for due, late in await asyncio.to_thread(probe_conn.recv):
                oversleep[phase.at(due)].append(late)
            await asyncio.to_thread(probe.join, 10)
        finally:
            if feeder is not None:
                await feeder.stop()
            if probe is not None and probe.is_alive():
                probe.terminate()
            if console is not None:
                await console.stop()
            await gw.stop()

    pulses = [w.mono for w in controller.writes if w.output == door.output and w.pulse_seconds is not None]
    by_window: dict[str, list[float]] = defaultdict(list)  # phase -> read -> relay
    on_loop: dict[str, list[float]] = defaultdict(list)  # phase -> present -> relay
    for r, mono in zip(feeder.reads, pulses, strict=False):
        by_window[r.phase].append(mono - r.read)
        on_loop[r.phase].append(mono - r.on_loop)
    return Results(
        decision={c: merged(by_window, c) for c in CONDITIONS},
        on_loop={c: merged(on_loop, c) for c in CONDITIONS},
        oversleep={c: merged(oversleep, c) for c in CONDITIONS},
        window_p99={c: [pct(by_window[f"{c}:{k}"], 0.99) for k in range(args.windows)] for c in CONDITIONS},
        unmatched=abs(len(pulses) - len(feeder.reads)),
        load=load,
        server=merged(server_samples, "load"),
        paths=list(paths),
    )


def merged(samples: dict[str, list[float]], condition: str) -> list[float]:
    """The samples of every window of one condition ("baseline" or "load")."""
    return [x for phase, s in samples.items() if phase.split(":")[0] == condition for x in s]


def report(args: argparse.Namespace, res: Results) -> None:
    ms = 1e3
    print(
        f"\n{'decision: card read (reader thread) -> relay command':52s} {'n':>6s} {'p50 ms':>8s} "
        f"{'p99 ms':>8s} {'max ms':>8s}"
    )
    for key, label in CONDITIONS.items():
        s = res.decision[key]
        print(
            f"  {label:50s} {len(s):6d} {pct(s, 0.5) * ms:8.3f} {pct(s, 0.99) * ms:8.3f} "
            f"{max(s, default=float('nan')) * ms:8.3f}"
        )
    base, loaded = res.decision["baseline"], res.decision["load"]
    print(
        f"  {'ratio load / baseline':50s} {'':6s} {pct(loaded, 0.5) / pct(base, 0.5):7.2f}x "
        f"{pct(loaded, 0.99) / pct(base, 0.99):7.2f}x"
    )
    for key in ("baseline", "load"):
        s = res.on_loop[key]
        print(
            f"  {'of which on the loop (present -> relay), ' + key:50s} {len(s):6d} "
            f"{pct(s, 0.5) * ms:8.3f} {pct(s, 0.99) * ms:8.3f} {max(s, default=float('nan')) * ms:8.3f}"
        )
    for key in CONDITIONS:
        s = res.oversleep[key]
        print(
            f"  {'bystander process, wake-up lateness, ' + key:50s} {len(s):6d} "
            f"{pct(s, 0.5) * ms:8.3f} {pct(s, 0.99) * ms:8.3f} {max(s, default=float('nan')) * ms:8.3f}"
        )
    for key in CONDITIONS:
        each = " ".join(f"{p * ms:.1f}" for p in res.window_p99[key])
        print(f"  {'p99 ms in each window, ' + key:50s} {each}")
    if res.unmatched:
        print(f"  WARNING: {res.unmatched} reads and relay pulses did not pair up")

    lat: dict[str, list[float]] = res.load.get("latencies", {})
    elapsed: float = res.load.get("elapsed", float("nan"))
    print(
        f"\n{'console API under load, client side':52s} {'n':>6s} {'req/s':>8s} {'p50 ms':>8s} "
        f"{'p99 ms':>8s} {'max ms':>8s}"
    )
    every: list[float] = []
    for path in res.paths:
        s = lat.get(path, [])
        every += s
        print(
            f"  GET {path:46s} {len(s):6d} {len(s) / elapsed:8.0f} {pct(s, 0.5) * ms:8.2f} "
            f"{pct(s, 0.99) * ms:8.2f} {max(s, default=float('nan')) * ms:8.2f}"
        )
    print(
        f"  {'all':50s} {len(every):6d} {len(every) / elapsed:8.0f} {pct(every, 0.5) * ms:8.2f} "
        f"{pct(every, 0.99) * ms:8.2f} {max(every, default=float('nan')) * ms:8.2f}"
    )
    inside = res.server
    print(
        f"  {'inside the app (server side, same requests)':50s} {len(inside):6d} {'':8s} "
        f"{pct(inside, 0.5) * ms:8.2f} {pct(inside, 0.99) * ms:8.2f} {max(inside, default=float('nan')) * ms:8.2f}"
    )
    lag: list[float] = res.load.get("lag", [])
    print(
        f"  {f'live feed, {args.streams} streams: event -> client':50s} {len(lag):6d} {'':8s} "
        f"{pct(lag, 0.5) * ms:8.2f} {pct(lag, 0.99) * ms:8.2f} {max(lag, default=float('nan')) * ms:8.2f}"
    )
    errors: dict[str, int] = res.load.get("errors", {})
    print(f"  errors: {', '.join(f'{k} x{v}' for k, v in errors.items()) or 'none'}")
    cpu: dict[str, float] = res.load["server_cpu"]
    extra = (cpu["load"] - cpu["baseline"]) * elapsed / len(every) * ms if every else float("nan")
    print(
        f"  gateway process CPU: {cpu['baseline']:.0%} of a core without load, {cpu['load']:.0%} with "
        f"({extra:.2f} ms more per request); client process {res.load.get('client_cpu', float('nan')):.0%}"
    )
    print(f"  load average now {os.getloadavg()[0]:.2f}")
    p99 = pct(loaded, 0.99) * ms
    print(f"\n{'target: decision p99 <= 5 ms under console load':52s} {'met' if p99 <= 5 else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run: 10,000 people, 2 x 5 s per condition")
    ap.add_argument("--clients", type=int, default=50, help="clients looping over the read-only endpoints")
    ap.add_argument("--streams", type=int, default=5, help="further clients holding the live feed open")
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds under load in all, and as many without (default 40)",
    )
    ap.add_argument("--windows", type=int, default=None, help="alternations of no load / load (default 4)")
    ap.add_argument(
        "--think", type=float, default=0.0, help="seconds between one client's requests (default 0: flat out)"
    )
    ap.add_argument("--rate", type=float, default=50.0, help="card reads per second")
    ap.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval in the gateway process (how long a thread may keep the GIL while another "
        f"waits for it; default {sys.getswitchinterval():g} s)",
    )
    ap.add_argument("--people", type=int, default=None, help="size of the access list (default 100,000)")
    args = ap.parse_args()
    args.seconds = args.seconds or (10.0 if args.quick else 40.0)
    args.windows = args.windows or (2 if args.quick else 4)
    args.people = args.people or (10_000 if args.quick else 100_000)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    load = os.getloadavg()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load[0]:.2f} at start; "
        f"{args.people:,} people; {args.rate:g} card reads/s"
    )
    print(
        f"{args.seconds:g} s without and {args.seconds:g} s with load, alternating in {args.windows} windows each"
    )
    print(
        f"load: {args.clients} clients looping over read-only endpoints "
        f"({f'{args.think:g} s' if args.think else 'no'} think time), "
        f"{args.streams} holding {STREAM_PATH}; in a separate process; uvicorn's HTTP parser: "
        + ("httptools" if importlib.util.find_spec("httptools") else "h11 (pure Python)")
        + f"; GIL switch interval {sys.getswitchinterval() * 1e3:g} ms"
    )
    report(args, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
