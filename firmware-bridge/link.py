"""The gateway's end of the serial link: one asyncio object per device that turns a noisy line into reliable
commands and events.

- Commands go one at a time. A command is resent with the *same* seq until its ACK or NAK arrives (the device
  answers a resend from its reply cache without running it again); after `retries` resends it fails TIMEOUT.
- Events from the device are acked every time they arrive (the ack may have been the thing lost) and passed
  on once: seqs seen in this boot of the device are remembered in a window.
- Heartbeats go out every `heartbeat_s`. The link is up while anything valid arrives from the device; after
  `missed` heartbeat periods of silence it is declared down, and it comes back by itself with the first frame
  after that. A port that fails (a USB adapter pulled out) is closed and reopened every `reopen_s`.

Serial I/O is pyserial opened non-blocking, read through loop.add_reader on its file descriptor: no thread,
and the same code runs on a UART, a USB adapter or a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge import protocol as p
from firmware_bridge.errors import BridgeError, BridgeErrorReason
from firmware_bridge.frame import Frame, FrameDecoder, FrameType, encode_frame
from firmware_bridge.protocol import Op

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkTiming:
    heartbeat_s: float = 0.5
    missed: int = 3  # heartbeat periods of silence before the link is down
    ack_timeout_s: float = 0.25  # wait this long for an answer before resending
    retries: int = 4
    reopen_s: float = 1.0


@dataclass(slots=True)
class LinkStats:
    sent: int = 0
    resent: int = 0
    events: int = 0
    duplicate_events: int = 0
    stray_answers: int = 0
    faults: dict[str, int] = field(default_factory=dict)  # frame faults by reason, from the decoder


EventCallback = Callable[[Frame], None]
StateCallback = Callable[[bool, str], None]  # (up, detail)
BootCallback = Callable[[int], None]  # a new boot id: the device was reset


def open_serial(port: str, baudrate: int) -> Any:
    """pyserial, imported here so the package imports where pyserial is missing."""
    import serial

    return serial.Serial(port, baudrate=baudrate, timeout=0, write_timeout=2, exclusive=True)


class Link:
    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        timing: LinkTiming | None = None,
        on_event: EventCallback | None = None,
        on_state: StateCallback | None = None,
        on_boot: BootCallback | None = None,
        name: str = "",
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timing = timing or LinkTiming()
        self.name = name or port
        self.up = False
        self.boot_id: int | None = None
        self.stats = LinkStats()
        self._on_event = on_event or (lambda frame: None)
        self._on_state = on_state or (lambda up, detail: None)
        self._on_boot = on_boot or (lambda boot_id: None)
        self._serial: Any = None
        self._decoder = FrameDecoder()
        self._seq = int.from_bytes(os.urandom(2), "big")
        self._lock = asyncio.Lock()
        self._pending: tuple[int, asyncio.Future[Frame]] | None = None
        self._seen: deque[int] = deque(maxlen=64)
        self._last_rx = 0.0
        self._up_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._port_error_logged = False
        self._down_reported = False  # an absent board is reported down once, not every heartbeat

    async def start(self) -> None:
        """Open the port and start heartbeats. Never raises: a missing port is retried in the background."""
        self._task = asyncio.create_task(self._supervise(), name=f"link-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close()

    async def wait_up(self, within_s: float) -> bool:
        """Wait until the link is up, at most within_s seconds; whether it is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up_event.wait(), within_s)
        return self._is_up()

    def _is_up(self) -> bool:
        return self.up

    async def request(self, opcode: int, payload: bytes = b"", *, retries: int | None = None) -> bytes:
        """Send a command and return its ACK payload. Raises BridgeError (LINK_DOWN, TIMEOUT, NAK)."""
        async with self._lock:
            if not self.up:
                raise BridgeError(BridgeErrorReason.LINK_DOWN, f"{self.name}: no heartbeat from the device")
            self._seq = (self._seq + 1) & 0xFFFF
            seq = self._seq
            wire = encode_frame(Frame(FrameType.COMMAND, seq, opcode, payload))
            future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            self._pending = (seq, future)
            try:
                for attempt in range(1 + (self.timing.retries if retries is None else retries)):
                    if attempt:
                        self.stats.resent += 1
                    self._write(wire)
                    self.stats.sent += 1
                    try:
                        answer = await asyncio.wait_for(asyncio.shield(future), self.timing.ack_timeout_s)
                    except TimeoutError:
                        if not self._is_up():
                            break
                        continue
                    if answer.type == FrameType.NAK:
                        code = answer.payload[0] if answer.payload else 0
                        raise BridgeError(
                            BridgeErrorReason.NAK,
                            f"opcode 0x{opcode:02x}, code {code}",
                            nak_code=code,
                            nak_detail=answer.payload[1:],
                        )
                    return answer.payload
            finally:
                self._pending = None
                if not future.done():
                    future.cancel()
            reason = BridgeErrorReason.TIMEOUT if self._is_up() else BridgeErrorReason.LINK_DOWN
            raise BridgeError(reason, f"{self.name}: no answer to opcode 0x{opcode:02x}")

    # --- the port ------------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = encode_frame(Frame(FrameType.HEARTBEAT, 0, Op.HEARTBEAT))
        next_open = 0.0
        started = time.monotonic()
        while True:
            now = time.monotonic()
            if self._serial is None and now >= next_open:
                next_open = now + self.timing.reopen_s
                self._open(loop)
            if self._serial is not None:
                with contextlib.suppress(BridgeError):
                    self._write(heartbeat)
            silence = self.timing.heartbeat_s * self.timing.missed
            quiet = time.monotonic() - max(self._last_rx, started)
            if quiet > silence and (self.up or not self._down_reported):
                detail = f"no heartbeat for {silence:.1f} s" if self._serial else f"cannot open {self.port}"
                self._set_up(False, detail)
            await asyncio.sleep(self.timing.heartbeat_s)

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._serial = open_serial(self.port, self.baudrate)
        except (OSError, ValueError) as err:  # serial.SerialException is an OSError
            if not self._port_error_logged:
                log.error("%s: cannot open %s: %s", self.name, self.port, err)
                self._port_error_logged = True
            return
        if self._port_error_logged:
            log.info("%s: port %s open again", self.name, self.port)
        self._port_error_logged = False
        self._decoder = FrameDecoder()
        loop.add_reader(self._serial.fileno(), self._readable)

    def _close(self) -> None:
        if self._serial is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._serial.fileno())
        with contextlib.suppress(Exception):
            self._serial.close()
        self._serial = None

    def _write(self, data: bytes) -> None:
        if self._serial is None:
            raise BridgeError(BridgeErrorReason.PORT, f"{self.port} is not open")
        try:
            self._serial.write(data)
        except (OSError, ValueError) as err:
            self._port_failed(err)
            raise BridgeError(BridgeErrorReason.PORT, str(err)) from err

    def _readable(self) -> None:
        try:
            data = self._serial.read(4096)
        except (OSError, ValueError, TypeError) as err:
            self._port_failed(err)
            return
        if not data:
            return
        for frame in self._decoder.feed(data):
            self._on_frame(frame)
        self.stats.faults = dict(self._decoder.faults)

    def _port_failed(self, err: Exception) -> None:
        log.error("%s: port %s failed: %s", self.name, self.port, err)
        self._close()
        if self.up:
            self._set_up(False, f"port failed: {err}")

    # --- frames --------------------------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        self._last_rx = time.monotonic()
        if frame.type == FrameType.HEARTBEAT:
            with contextlib.suppress(ValueError):
                self._note_boot(p.unpack_heartbeat(frame.payload)[0])
        if not self.up:
            self._set_up(True, "heartbeat from the device")
        if frame.type in (FrameType.ACK, FrameType.NAK):
            pending = self._pending
            if pending is not None and pending[0] == frame.seq and not pending[1].done():
                pending[1].set_result(frame)
            else:
                self.stats.stray_answers += 1
        elif frame.type == FrameType.EVENT:
            with contextlib.suppress(BridgeError):
                self._write(encode_frame(Frame(FrameType.ACK, frame.seq, frame.opcode)))
            if frame.opcode == Op.EV_BOOT:
                with contextlib.suppress(ValueError):
                    self._note_boot(p.unpack_boot(frame.payload)[0])
            if frame.seq in self._seen:
                self.stats.duplicate_events += 1
                return
            self._seen.append(frame.seq)
            self.stats.events += 1
            self._on_event(frame)

    def _note_boot(self, boot_id: int) -> None:
        if boot_id == self.boot_id:
            return
        known = self.boot_id is not None
        self.boot_id = boot_id
        self._seen.clear()  # a new boot numbers its events afresh
        if known:
            log.warning("%s: device reset (new boot id %08x)", self.name, boot_id)
        self._on_boot(boot_id)

    def _set_up(self, up: bool, detail: str) -> None:
        self.up = up
        self._down_reported = not up
        if up:
            self._up_event.set()
            log.info("%s: link up (%s)", self.name, detail)
        else:
            self._up_event.clear()
            log.warning("%s: link down (%s)", self.name, detail)
            pending = self._pending
            if pending is not None and not pending[1].done():
                pending[1].set_exception(BridgeError(BridgeErrorReason.LINK_DOWN, detail))
        self._on_state(up, detail)
