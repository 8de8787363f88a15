"""The device's hardware abstraction: the only things the protocol core needs from a board.

Each class is a base to subclass: `sim` implements them over a pseudo-terminal and memory, a MicroPython port over
machine.UART, machine.Pin, the flash partitions and an Ed25519 verifier. Plain classes, not ABCs: MicroPython has
no abc module.
"""


class Port:
    """The serial line. Never blocks."""

    def read(self) -> bytes:
        """Whatever bytes have arrived since the last call; b"" when none."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError


class Clock:
    def ticks_ms(self) -> int:
        raise NotImplementedError

    def diff(self, later: int, earlier: int) -> int:
        """Milliseconds from earlier to later (MicroPython: time.ticks_diff, which survives wrap-around)."""
        return later - earlier


class Board:
    """Relays, inputs, reader lines, LEDs and the buzzer of one door-controller board."""

    outputs = 0
    inputs = 0
    factory_version = "0.0.0"  # the version in slot 0 before any update

    def set_output(self, number: int, energised: bool) -> None:
        raise NotImplementedError

    def read_inputs(self) -> list[bool]:
        """Debounced input levels, index 0 = input 1 (door contact, exit button, tamper switch, ...)."""
        raise NotImplementedError

    def take_reads(self) -> list[tuple[int, int, int, bytes]]:
        """Credentials read since the last call: (reader, ReaderFormat, bit count, data)."""
        return []

    def led(self, led: int, colour: int, ms: int) -> None:
        pass

    def buzzer(self, ms: int, count: int) -> None:
        pass

    def host_link(self, up: bool) -> None:
        """The gateway's heartbeats stopped (False) or came back (True): show it, e.g. an amber LED."""

    def self_test(self) -> bool:
        """Whether the running image works well enough to keep (checked once after a boot on trial)."""
        return True

    def random_u32(self) -> int:
        raise NotImplementedError

    def hardware_reset_cause(self) -> int:
        """ResetCause.POWER_ON after a power cut, -1 when the chip cannot tell (then the cause saved before
        the last intentional reset is used)."""
        return -1


class Storage:
    """Two firmware slots and a small metadata record, both surviving a reset (flash on a real board)."""

    slot_size = 0

    def erase(self, slot: int) -> None:
        raise NotImplementedError

    def write(self, slot: int, offset: int, data: bytes) -> None:
        raise NotImplementedError

    def read(self, slot: int, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def load_meta(self) -> bytes:
        """The last record saved, b"" on a fresh board."""
        raise NotImplementedError

    def save_meta(self, data: bytes) -> None:
        raise NotImplementedError


class Verifier:
    def ed25519(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        raise NotImplementedError
