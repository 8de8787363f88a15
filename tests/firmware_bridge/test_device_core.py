"""The board's protocol core driven directly (no pty, no thread): a fake line and a clock the test moves."""

from __future__ import annotations

from firmware_bridge import protocol as p
from firmware_bridge.device.core import Device, DeviceConfig
from firmware_bridge.device.hal import Clock, Port
from firmware_bridge.device.sim import CryptographyVerifier, MemoryStorage, SimBoard
from firmware_bridge.device.slots import NO_SLOT, SlotMeta
from firmware_bridge.frame import Frame, FrameDecoder, FrameType, encode_frame
from firmware_bridge.protocol import Op, ResetCause
from hypothesis import given, settings
from hypothesis import strategies as st


class LinePort(Port):
    def __init__(self) -> None:
        self.inbox = b""
        self.decoder = FrameDecoder()
        self.sent: list[Frame] = []

    def read(self) -> bytes:
        data, self.inbox = self.inbox, b""
        return data

    def write(self, data: bytes) -> None:
        self.sent += self.decoder.feed(data)


class StepClock(Clock):
    def __init__(self) -> None:
        self.now = 1000

    def ticks_ms(self) -> int:
        return self.now


def make() -> tuple[Device, LinePort, StepClock, SimBoard]:
    port, clock, board = LinePort(), StepClock(), SimBoard(outputs=4, inputs=4)
    device = Device(
        port, clock, board, MemoryStorage(4096), CryptographyVerifier(), bytes(32), DeviceConfig()
    )
    return device, port, clock, board


def command(seq: int, opcode: int, payload: bytes = b"") -> bytes:
    return encode_frame(Frame(FrameType.COMMAND, seq, opcode, payload))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3)), min_size=1, max_size=12), st.randoms())
def test_each_command_runs_once_however_often_it_arrives(plan: list[tuple[int, int]], rng: object) -> None:
    device, port, _, board = make()
    wire = []
    for seq, (output, copies) in enumerate(plan, start=100):
        wire += [command(seq, Op.PULSE, p.pack_pulse(output, True, 5000))] * copies
    rng.shuffle(wire)  # type: ignore[attr-defined]
    for frame in wire:
        port.inbox += frame
        device.poll()
    assert device.executed == len(plan)
    answers = [f for f in port.sent if f.type == FrameType.ACK]
    assert len(answers) == len(wire)  # every copy answered
    assert sum(board.energisations(n) for n in range(1, 5)) <= len(plan)


def test_a_reused_seq_with_another_payload_is_a_new_command() -> None:
    device, port, _, _ = make()
    port.inbox += command(7, Op.PULSE, p.pack_pulse(1, True, 100)) + command(
        7, Op.PULSE, p.pack_pulse(2, True, 100)
    )
    device.poll()
    assert device.executed == 2


def test_the_board_ends_the_pulse_itself() -> None:
    device, port, clock, board = make()
    port.inbox += command(1, Op.PULSE, p.pack_pulse(3, True, 250))
    device.poll()
    assert board.level(3)
    clock.now += 249
    device.poll()
    assert board.level(3)
    clock.now += 1
    device.poll()
    assert not board.level(3)


def test_events_are_resent_until_acked_and_kept_in_order() -> None:
    device, port, clock, board = make()
    device.poll()
    boot = [f for f in port.sent if f.type == FrameType.EVENT]
    assert [f.opcode for f in boot] == [Op.EV_BOOT]
    port.inbox += encode_frame(Frame(FrameType.ACK, boot[0].seq, Op.EV_BOOT))
    board.set_input(2, True)
    board.set_input(3, True)
    device.poll()  # takes the ack, sends the first input event
    clock.now += 200
    device.poll()  # not acked: the same event again
    events = [f for f in port.sent if f.type == FrameType.EVENT and f.opcode == Op.EV_INPUT]
    assert len(events) == 2 and events[0] == events[1]
    assert p.unpack_input_event(events[0].payload) == (2, True)
    port.inbox += encode_frame(Frame(FrameType.ACK, events[0].seq, Op.EV_INPUT))
    device.poll()
    latest = [f for f in port.sent if f.type == FrameType.EVENT][-1]
    assert p.unpack_input_event(latest.payload) == (3, True)
    assert latest.seq == (events[0].seq + 1) & 0xFFFF


def test_unknown_opcode_and_bad_payload_are_refused() -> None:
    device, port, _, _ = make()
    port.inbox += (
        command(1, 0x7E) + command(2, Op.PULSE, b"\x01") + command(3, Op.PULSE, p.pack_pulse(9, True, 10))
    )
    device.poll()
    naks = [(f.seq, f.payload[0]) for f in port.sent if f.type == FrameType.NAK]
    assert naks == [(1, p.NakCode.UNKNOWN_OP), (2, p.NakCode.BAD_ARGUMENT), (3, p.NakCode.BAD_ARGUMENT)]


def test_boot_rule_trial_confirm_and_rollback() -> None:
    meta = SlotMeta("1.0")
    assert meta.boot(ResetCause.POWER_ON) == (0, ResetCause.POWER_ON, False)
    meta.trial, meta.tries, meta.next_cause = 1, 1, ResetCause.UPDATE
    assert meta.boot(-1) == (1, ResetCause.UPDATE, True)  # first boot of the new image, on trial
    assert meta.boot(-1) == (0, ResetCause.ROLLBACK, False)  # reset before it confirmed: back to slot 0
    assert meta.trial == NO_SLOT
    meta.trial, meta.tries = 1, 1
    meta.boot(-1)
    meta.confirm()
    assert meta.boot(-1) == (1, ResetCause.WATCHDOG, False)
    assert SlotMeta.from_bytes(meta.to_bytes(), "1.0").active == 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*range(0x08), 0x10, 0x11, 0x12, 0x40, 0x7F]), st.binary(max_size=300))
def test_any_payload_to_any_opcode_is_answered_never_raises(opcode: int, payload: bytes) -> None:
    device, port, _, _ = make()
    port.inbox += command(5, opcode, payload[: p.CHUNK_SIZE + 32])
    device.poll()
    answers = [f for f in port.sent if f.seq == 5 and f.type in (FrameType.ACK, FrameType.NAK)]
    assert len(answers) == 1


def test_the_board_notices_when_the_gateway_stops_and_returns() -> None:
    device, port, clock, board = make()
    host_beat = encode_frame(Frame(FrameType.HEARTBEAT, 0, Op.HEARTBEAT))
    port.inbox += host_beat
    device.poll()
    assert board.host_changes == [True]
    clock.now += 3 * 500
    device.poll()
    assert board.host_changes == [True, False]
    port.inbox += host_beat
    device.poll()
    assert board.host_changes == [True, False, True]
