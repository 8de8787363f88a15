"""The door-controller firmware's protocol logic: one `Device`, driven by calling `poll()` in the main loop.

Rules it keeps (the host relies on each):

- A command is executed once. The answer to each recent command is kept by seq in a small reply cache; a command
  that arrives again with the same seq, opcode and payload (the host retrying because an ack was lost) gets the
  cached answer and is not executed again, so an unlock never fires twice.
- A pulse ("unlock for N ms") is timed here, so the door relocks even if the gateway dies mid-unlock.
- Events (input changes, reader data, boot) are queued and sent one at a time, resent every `event_retry_ms`
  until the host acks that seq, so none is lost to a noisy line; order is kept.
- A heartbeat goes out every `heartbeat_ms` whatever happens; the host declares the link down when they stop.
  The other way, the board tells its `Board.host_link` when the gateway's heartbeats stop or come back.
- Each boot picks a random boot id and a random first event seq, so the host can tell a reset from a retry.
- Firmware updates arrive in chunks into the inactive slot, each chunk checked (CRC-32 read back from flash)
  and the progress saved, so a transfer resumes where it stopped. Commit verifies the SHA-256 and the Ed25519
  release signature over the whole slot before the slot is booted on trial (see slots.py).

Portable to MicroPython: see the package docstring.
"""

import binascii
import hashlib

from firmware_bridge import protocol as p
from firmware_bridge.device.hal import Board, Clock, Port, Storage, Verifier
from firmware_bridge.device.slots import NO_SLOT, SlotMeta
from firmware_bridge.frame import Frame, FrameDecoder, FrameType, crc16, encode_frame
from firmware_bridge.protocol import NakCode, Op, ResetCause

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class DeviceConfig:
    def __init__(
        self,
        heartbeat_ms: int = 500,
        event_retry_ms: int = 200,
        max_events: int = 64,
        reply_cache: int = 16,
        self_test_after_ms: int = 200,
        trial_timeout_ms: int = 3000,
        host_missed: int = 3,
    ) -> None:
        self.heartbeat_ms = heartbeat_ms
        self.event_retry_ms = event_retry_ms
        self.max_events = max_events
        self.reply_cache = reply_cache
        self.self_test_after_ms = self_test_after_ms
        self.trial_timeout_ms = trial_timeout_ms
        self.host_missed = host_missed  # host heartbeat periods of silence before the gateway counts as gone


class NakError(Exception):
    def __init__(self, code: int, detail: bytes = b"") -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


class Device:
    def __init__(
        self,
        port: Port,
        clock: Clock,
        board: Board,
        storage: Storage,
        verifier: Verifier,
        release_key: bytes,
        config: DeviceConfig | None = None,
    ) -> None:
        self.port = port
        self.clock = clock
        self.board = board
        self.storage = storage
        self.verifier = verifier
        self.release_key = release_key
        self.config = config or DeviceConfig()
        self.decoder = FrameDecoder()
        self.boot_id = board.random_u32()
        self.started = clock.ticks_ms()
        self.meta = SlotMeta.from_bytes(storage.load_meta(), board.factory_version)
        self.slot, self.reset_cause, self.on_trial = self.meta.boot(board.hardware_reset_cause())
        storage.save_meta(self.meta.to_bytes())
        self.self_tested = False
        self.reset_requested = -1  # a ResetCause when the main loop must reset the chip
        self.executed = 0  # commands executed (not answered from the cache); tests read it

        self.levels = [False] * (board.outputs + 1)  # 1-based; a reset leaves every relay de-energised
        self.pulses: dict[int, tuple[int, bool]] = {}  # output -> (deadline ms, level to return to)
        self.input_levels = board.read_inputs()
        self.replies: dict[int, tuple[int, int, bytes]] = {}  # seq -> (opcode, payload crc, encoded answer)
        self.reply_order: list[int] = []
        self.events: list[tuple[int, int, bytes]] = []  # (seq, opcode, payload), oldest first
        self.event_seq = board.random_u32() & 0xFFFF
        self.event_sent_at = -1
        self.events_dropped = 0
        self.last_heartbeat = self.started - self.config.heartbeat_ms
        self.last_host = -1
        self.host_up = False
        self.handlers: dict[int, Callable[[bytes], bytes]] = {
            Op.STATUS: self._status,
            Op.PULSE: self._pulse,
            Op.SET_OUTPUT: self._set_output,
            Op.LED: self._led,
            Op.BUZZER: self._buzzer,
            Op.INPUTS: self._inputs,
            Op.REBOOT: self._reboot,
            Op.UPDATE_BEGIN: self._update_begin,
            Op.UPDATE_CHUNK: self._update_chunk,
            Op.UPDATE_COMMIT: self._update_commit,
        }
        self.version = self.meta.versions[self.slot]
        self._queue_event(Op.EV_BOOT, p.pack_boot(self.boot_id, self.reset_cause, self.slot, self.version))

    # --- the main loop -------------------------------------------------------------------------------------

    def poll(self) -> None:
        """One turn of the main loop: read the line, run timers, scan inputs, send what is due."""
        now = self.clock.ticks_ms()
        data = self.port.read()
        if data:
            for frame in self.decoder.feed(data):
                self._on_frame(frame, now)
        for output in list(self.pulses):
            deadline, level = self.pulses[output]
            if self.clock.diff(now, deadline) >= 0:
                del self.pulses[output]
                self._drive(output, level)
        host_up = self.last_host >= 0 and (
            self.clock.diff(now, self.last_host) < self.config.heartbeat_ms * self.config.host_missed
        )
        if host_up != self.host_up:
            self.host_up = host_up
            self.board.host_link(host_up)  # e.g. an amber LED while the gateway is gone
        self._scan(now)
        self._check_trial(now)
        if self.events and (
            self.event_sent_at < 0 or self.clock.diff(now, self.event_sent_at) >= self.config.event_retry_ms
        ):
            seq, opcode, payload = self.events[0]
            self.port.write(encode_frame(Frame(FrameType.EVENT, seq, opcode, payload)))
            self.event_sent_at = now
        if self.clock.diff(now, self.last_heartbeat) >= self.config.heartbeat_ms:
            self.last_heartbeat = now
            uptime = self.clock.diff(now, self.started)
            heartbeat = Frame(FrameType.HEARTBEAT, 0, Op.HEARTBEAT, p.pack_heartbeat(self.boot_id, uptime))
            self.port.write(encode_frame(heartbeat))

    def _on_frame(self, frame: Frame, now: int) -> None:
        self.last_host = now
        if frame.type == FrameType.COMMAND:
            self._on_command(frame)
        elif frame.type == FrameType.ACK and self.events and self.events[0][0] == frame.seq:
            self.events.pop(0)
            self.event_sent_at = -1  # send the next one on this turn
        # host heartbeats only refresh last_host; stray acks and naks are ignored

    def _on_command(self, frame: Frame) -> None:
        digest = crc16(frame.payload)
        cached = self.replies.get(frame.seq)
        if cached is not None and cached[0] == frame.opcode and cached[1] == digest:
            self.port.write(cached[2])  # a retry: answer again, do not execute again
            return
        handler = self.handlers.get(frame.opcode)
        try:
            if handler is None:
                raise NakError(NakCode.UNKNOWN_OP)
            self.executed += 1
            answer = Frame(FrameType.ACK, frame.seq, frame.opcode, handler(frame.payload))
        except NakError as nak:
            answer = Frame(FrameType.NAK, frame.seq, frame.opcode, p.pack_nak(nak.code, nak.detail))
        except (ValueError, IndexError):  # protocol's unpacking raises ValueError for a bad length
            answer = Frame(FrameType.NAK, frame.seq, frame.opcode, p.pack_nak(NakCode.BAD_ARGUMENT))
        encoded = encode_frame(answer)
        if frame.seq not in self.replies:
            self.reply_order.append(frame.seq)
            if len(self.reply_order) > self.config.reply_cache:
                del self.replies[self.reply_order.pop(0)]
        self.replies[frame.seq] = (frame.opcode, digest, encoded)
        self.port.write(encoded)

    def _queue_event(self, opcode: int, payload: bytes) -> None:
        if len(self.events) >= self.config.max_events:
            # Keep the newest: the host reads the input levels again when it reconnects anyway.
            self.events.pop(1 if len(self.events) > 1 else 0)
            self.events_dropped += 1
        self.event_seq = (self.event_seq + 1) & 0xFFFF
        self.events.append((self.event_seq, opcode, payload))

    def _scan(self, now: int) -> None:
        levels = self.board.read_inputs()
        for i, active in enumerate(levels):
            if active != self.input_levels[i]:
                self._queue_event(Op.EV_INPUT, p.pack_input_event(i + 1, active))
        self.input_levels = levels
        for reader, fmt, bits, data in self.board.take_reads():
            self._queue_event(Op.EV_READER, p.pack_reader_event(reader, fmt, bits, data))

    def _check_trial(self, now: int) -> None:
        if not self.on_trial:
            return
        age = self.clock.diff(now, self.started)
        if not self.self_tested and age >= self.config.self_test_after_ms:
            self.self_tested = True
            if self.board.self_test():
                self.meta.confirm()
                self.storage.save_meta(self.meta.to_bytes())
                self.on_trial = False
                return
        if age >= self.config.trial_timeout_ms:
            self.reset_requested = ResetCause.WATCHDOG  # never confirmed: the bootloader rolls back

    def _drive(self, output: int, energised: bool) -> None:
        self.levels[output] = energised
        self.board.set_output(output, energised)

    def _check_output(self, output: int) -> None:
        if not 1 <= output <= self.board.outputs:
            raise NakError(NakCode.BAD_ARGUMENT, b"no such output")

    # --- commands ------------------------------------------------------------------------------------------

    def _status(self, payload: bytes) -> bytes:
        uptime = self.clock.diff(self.clock.ticks_ms(), self.started)
        return p.pack_status(
            self.boot_id,
            uptime,
            self.reset_cause,
            self.slot,
            not self.on_trial,
            self.board.outputs,
            self.board.inputs,
            self.version,
        )

    def _pulse(self, payload: bytes) -> bytes:
        output, energised, ms = p.unpack_pulse(payload)
        self._check_output(output)
        if not 0 < ms <= p.MAX_PULSE_MS:
            raise NakError(NakCode.BAD_ARGUMENT, b"pulse length")
        self._drive(output, energised)
        self.pulses[output] = (self.clock.ticks_ms() + ms, not energised)
        return b""

    def _set_output(self, payload: bytes) -> bytes:
        output, energised = p.unpack_output(payload)
        self._check_output(output)
        self.pulses.pop(output, None)
        self._drive(output, energised)
        return b""

    def _led(self, payload: bytes) -> bytes:
        self.board.led(*p.unpack_led(payload))
        return b""

    def _buzzer(self, payload: bytes) -> bytes:
        self.board.buzzer(*p.unpack_buzzer(payload))
        return b""

    def _inputs(self, payload: bytes) -> bytes:
        return p.pack_inputs(self.input_levels)

    def _reboot(self, payload: bytes) -> bytes:
        self._reset(ResetCause.COMMAND)
        return b""

    def _reset(self, cause: int) -> None:
        self.meta.next_cause = cause
        self.storage.save_meta(self.meta.to_bytes())
        self.reset_requested = cause  # the main loop resets once this turn's answer is written

    # --- firmware update -----------------------------------------------------------------------------------

    def _update_begin(self, payload: bytes) -> bytes:
        size, sha, sig, version = p.unpack_begin(payload)
        if self.on_trial:
            raise NakError(NakCode.UPDATE_IN_TRIAL)
        if not 0 < size <= self.storage.slot_size:
            raise NakError(NakCode.TOO_LARGE)
        m = self.meta
        target = 1 - self.slot
        same = (m.upd_slot, m.upd_size, m.upd_sha, m.upd_sig, m.upd_version) == (
            target,
            size,
            sha,
            sig,
            version,
        )
        if not same:
            self.storage.erase(target)
            m.clear_update()
            m.upd_slot, m.upd_size, m.upd_sha, m.upd_sig, m.upd_version = target, size, sha, sig, version
            self.storage.save_meta(m.to_bytes())
        return p.u32(m.upd_offset)

    def _update_chunk(self, payload: bytes) -> bytes:
        offset, crc, data = p.unpack_chunk(payload)
        m = self.meta
        if m.upd_slot == NO_SLOT:
            raise NakError(NakCode.NO_UPDATE)
        if offset != m.upd_offset:
            raise NakError(NakCode.OFFSET, p.u32(m.upd_offset))
        if not data or offset + len(data) > m.upd_size or binascii.crc32(data) != crc:
            raise NakError(NakCode.BAD_ARGUMENT, b"chunk")
        self.storage.write(m.upd_slot, offset, data)
        if binascii.crc32(self.storage.read(m.upd_slot, offset, len(data))) != crc:
            raise NakError(NakCode.WRITE_FAILED)
        m.upd_offset = offset + len(data)
        self.storage.save_meta(m.to_bytes())
        return p.u32(m.upd_offset)

    def _update_commit(self, payload: bytes) -> bytes:
        m = self.meta
        if m.upd_slot == NO_SLOT:
            raise NakError(NakCode.NO_UPDATE)
        if m.upd_offset < m.upd_size:
            raise NakError(NakCode.INCOMPLETE, p.u32(m.upd_offset))
        digest = hashlib.sha256()
        for start in range(0, m.upd_size, 1024):
            digest.update(self.storage.read(m.upd_slot, start, min(1024, m.upd_size - start)))
        if digest.digest() != m.upd_sha:
            m.clear_update()
            self.storage.save_meta(m.to_bytes())
            raise NakError(NakCode.BAD_HASH)
        message = p.signed_message(m.upd_size, m.upd_sha, m.upd_version)
        if not self.verifier.ed25519(self.release_key, m.upd_sig, message):
            m.clear_update()
            self.storage.save_meta(m.to_bytes())
            raise NakError(NakCode.BAD_SIGNATURE)
        m.trial = m.upd_slot
        m.tries = 1
        m.versions[m.upd_slot] = m.upd_version
        m.clear_update()
        self._reset(ResetCause.UPDATE)
        return b""
