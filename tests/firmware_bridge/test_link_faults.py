"""The link over real pseudo-terminals with a fault-injecting relay: lost acks, garbled bytes, bad CRCs, split
frames, a device reset mid-session, the cable pulled and put back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from firmware_bridge import protocol as p
from firmware_bridge.controller import FirmwareBridgeController
from firmware_bridge.frame import FrameType
from firmware_bridge.link import Link
from firmware_bridge.protocol import Op
from firmware_bridge.testbench import FAST_LINK, Bench, eventually

from drivers.door_controller import InputChange
from drivers.errors import DriverError, DriverErrorReason


@pytest.fixture
async def link(bench: Bench) -> AsyncIterator[Link]:
    link = Link(bench.port, timing=FAST_LINK)
    await link.start()
    assert await link.wait_up(5)
    yield link
    await link.stop()


class Recorder:
    def __init__(self) -> None:
        self.inputs: list[InputChange] = []
        self.online: list[tuple[bool, str]] = []

    def on_input(self, change: InputChange) -> None:
        self.inputs.append(change)

    def on_online(self, controller_id: str, online: bool, detail: str) -> None:
        self.online.append((online, detail))


@pytest.fixture
async def controller(bench: Bench) -> AsyncIterator[tuple[FirmwareBridgeController, Recorder]]:
    ctl = FirmwareBridgeController("mcu-1", bench.port, outputs=4, inputs=8, timing=FAST_LINK)
    rec = Recorder()
    ctl.bind(rec.on_input, rec.on_online)
    await ctl.start()
    await eventually(lambda: ctl.online)
    yield ctl, rec
    await ctl.stop()


async def test_lost_acks_do_not_unlock_twice(bench: Bench, link: Link) -> None:
    bench.relay.b_to_a.drop_types[FrameType.ACK] = 3
    before = bench.device.device.executed
    await link.request(Op.PULSE, p.pack_pulse(1, True, 2000))
    assert bench.relay.b_to_a.dropped == 3
    assert link.stats.resent >= 3
    assert bench.device.device.executed == before + 1  # the resends were answered from the reply cache
    assert bench.board.energisations(1) == 1


async def test_lost_commands_are_resent(bench: Bench, link: Link) -> None:
    bench.relay.a_to_b.drop_types[FrameType.COMMAND] = 2
    await link.request(Op.SET_OUTPUT, p.pack_output(2, True))
    assert bench.board.level(2)
    assert bench.board.energisations(2) == 1


async def test_garbled_bytes_and_bad_crcs_are_survived(bench: Bench, link: Link) -> None:
    bench.relay.b_to_a.garble = 3
    bench.relay.a_to_b.corrupt_crc = 2
    for _ in range(4):
        status = p.unpack_status(await link.request(Op.STATUS))
        assert status[7] == "1.0.0"
    await link.request(Op.PULSE, p.pack_pulse(1, True, 1000))
    assert bench.board.energisations(1) == 1
    assert sum(link.stats.faults.values()) >= 1
    assert bench.device.device.decoder.faults.get("crc", 0) >= 1


async def test_frames_split_across_reads(
    bench: Bench, controller: tuple[FirmwareBridgeController, Recorder]
) -> None:
    ctl, rec = controller
    bench.relay.a_to_b.split = True
    bench.relay.b_to_a.split = True
    await ctl.set_output(3, True, pulse_seconds=0.5)
    assert bench.board.level(3)
    bench.board.set_input(1, True)
    await eventually(lambda: InputChange("mcu-1", 1, True) in rec.inputs)


async def test_events_are_acked_resent_and_reported_once(
    bench: Bench, controller: tuple[FirmwareBridgeController, Recorder]
) -> None:
    ctl, rec = controller
    bench.relay.a_to_b.drop_types[FrameType.ACK] = 2  # the host's acks of the next two events are lost
    bench.board.set_input(2, True)
    await eventually(
        lambda: bench.relay.a_to_b.dropped == 2 and not bench.device.device.events
    )  # acked at last
    assert rec.inputs == [InputChange("mcu-1", 2, True)]
    assert ctl.link.stats.duplicate_events >= 2


async def test_reader_data_reaches_the_controller(
    bench: Bench, controller: tuple[FirmwareBridgeController, Recorder]
) -> None:
    ctl, _ = controller
    reads: list[bytes] = []
    ctl.on_reader = lambda data: reads.append(data.data)
    bench.board.present(1, p.ReaderFormat.WIEGAND, 26, b"\x02\x40\x12\x34")
    await eventually(lambda: reads == [b"\x02\x40\x12\x34"])


async def test_device_reset_mid_session(
    bench: Bench, controller: tuple[FirmwareBridgeController, Recorder]
) -> None:
    ctl, rec = controller
    await ctl.set_output(1, True)
    first_boot = ctl.link.boot_id
    bench.board.set_input(4, True)  # changes while the chip resets: learnt by the resync, not an event
    bench.device.reset()
    await eventually(lambda: ctl.link.boot_id != first_boot)
    # The reset dropped the relay; the controller puts back the level it was told to hold.
    await eventually(lambda: bench.board.energisations(1) == 2 and bench.board.level(1))
    await eventually(lambda: InputChange("mcu-1", 4, True) in rec.inputs)
    await ctl.set_output(2, True, pulse_seconds=1.0)
    assert bench.board.level(2)
    status = p.unpack_status(await ctl.link.request(Op.STATUS))
    assert status[2] == p.ResetCause.WATCHDOG


async def test_cable_unplugged_and_replugged(
    bench: Bench, controller: tuple[FirmwareBridgeController, Recorder]
) -> None:
    ctl, rec = controller
    bench.relay.unplug()
    await eventually(lambda: not ctl.online)
    assert rec.online[-1][0] is False
    with pytest.raises(DriverError) as err:
        await ctl.set_output(1, True, pulse_seconds=1.0)
    assert err.value.reason is DriverErrorReason.OFFLINE
    bench.board.set_input(3, True)  # the event cannot get through...
    bench.relay.replug()
    await eventually(lambda: ctl.online)
    await eventually(lambda: InputChange("mcu-1", 3, True) in rec.inputs)  # ...but arrives after re-plug
    assert rec.inputs.count(InputChange("mcu-1", 3, True)) == 1
    await ctl.set_output(1, True, pulse_seconds=1.0)
    assert bench.board.energisations(1) == 1


async def test_the_board_relocks_when_the_gateway_is_gone(bench: Bench, link: Link) -> None:
    await link.request(Op.PULSE, p.pack_pulse(1, True, 150))
    await link.stop()
    assert bench.board.level(1)
    await eventually(lambda: not bench.board.level(1), within=5)


async def test_bad_arguments_are_refused(
    bench: Bench, controller: tuple[FirmwareBridgeController, Recorder]
) -> None:
    ctl, _ = controller
    with pytest.raises(DriverError) as err:
        await ctl.set_output(9, True)
    assert err.value.reason is DriverErrorReason.BAD_ARGUMENT
    ctl.outputs = 9  # pretend the config says more outputs than the board has: the board refuses
    with pytest.raises(DriverError) as err:
        await ctl.set_output(9, True)
    assert err.value.reason is DriverErrorReason.BAD_ARGUMENT


async def test_an_absent_board_is_reported_offline_once_then_online(bench: Bench) -> None:
    bench.relay.unplug()
    ctl = FirmwareBridgeController("mcu-1", bench.port, timing=FAST_LINK)
    rec = Recorder()
    ctl.bind(rec.on_input, rec.on_online)
    await ctl.start()
    try:
        await eventually(lambda: rec.online == [(False, "no heartbeat for 0.2 s")])
        bench.relay.replug()
        await eventually(lambda: ctl.online)
        assert [online for online, _ in rec.online] == [False, True]
    finally:
        await ctl.stop()


async def test_a_missing_port_is_reported_offline() -> None:
    ctl = FirmwareBridgeController("mcu-9", "/dev/nonexistent-menwei-port", timing=FAST_LINK)
    rec = Recorder()
    ctl.bind(rec.on_input, rec.on_online)
    await ctl.start()
    try:
        await eventually(lambda: rec.online == [(False, "cannot open /dev/nonexistent-menwei-port")])
    finally:
        await ctl.stop()
