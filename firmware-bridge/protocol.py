"""What the frames say: opcodes, answer codes and the payload layouts, for both ends of the link.

Shared with the device reference (and so MicroPython-portable: struct and plain classes only). All integers
are big-endian. The host wraps these tuples into typed dataclasses in its own modules; the device uses them as
they are, because a dataclass costs RAM and import time on a microcontroller.

Commands (host -> device; ACK payload after the arrow):

    STATUS        -                                   -> boot_id:u32 uptime_ms:u32 reset_cause:u8 slot:u8
                                                         confirmed:u8 outputs:u8 inputs:u8 version:utf-8
    PULSE         output:u8 energised:u8 ms:u32        -> -   ("unlock for N ms": the device reverts the output
                                                              itself when ms have passed)
    SET_OUTPUT    output:u8 energised:u8               -> -   (cancels a running pulse on that output)
    LED           led:u8 colour:u8 ms:u16              -> -   (ms 0 = steady)
    BUZZER        ms:u16 count:u8                      -> -
    INPUTS        -                                    -> count:u8 bitmap (bit i = input i+1 active)
    REBOOT        -                                    -> -   (then resets, cause COMMAND)
    UPDATE_BEGIN  size:u32 sha256:32 signature:64 version:utf-8 -> offset:u32 (bytes already held: resume)
    UPDATE_CHUNK  offset:u32 crc32:u32 data            -> next_offset:u32
    UPDATE_COMMIT -                                    -> -   (verified; the device resets into the new slot)

Events (device -> host, acknowledged by an ACK with the same seq and opcode):

    INPUT         input:u8 active:u8                  door contact, exit button, tamper: all are inputs
    READER        reader:u8 format:u8 bits:u8 data    Wiegand bits (MSB first) or keypad keys (ASCII)
    BOOT          boot_id:u32 reset_cause:u8 slot:u8 version:utf-8

Heartbeat payloads: device boot_id:u32 uptime_ms:u32; host: empty.
NAK payload: code:u8 detail (for NakCode.OFFSET, detail is the expected offset:u32).
"""

import struct

# struct format strings, not struct.Struct objects: MicroPython's struct has no Struct class.


class Op:
    STATUS = 0x01
    PULSE = 0x02
    SET_OUTPUT = 0x03
    LED = 0x04
    BUZZER = 0x05
    INPUTS = 0x06
    REBOOT = 0x07
    UPDATE_BEGIN = 0x10
    UPDATE_CHUNK = 0x11
    UPDATE_COMMIT = 0x12

    EV_INPUT = 0x40
    EV_READER = 0x41
    EV_BOOT = 0x42

    HEARTBEAT = 0x00


class NakCode:
    UNKNOWN_OP = 1
    BAD_ARGUMENT = 2
    OFFSET = 3  # a chunk not at the next expected offset
    BAD_HASH = 4
    BAD_SIGNATURE = 5
    INCOMPLETE = 6  # commit before the whole image arrived
    NO_UPDATE = 7  # chunk or commit without a begin
    TOO_LARGE = 8  # image larger than a slot
    WRITE_FAILED = 9  # flash read-back differs from the chunk
    UPDATE_IN_TRIAL = 10  # the running image is not confirmed yet: no new update until it is


class ResetCause:
    POWER_ON = 0
    WATCHDOG = 1
    COMMAND = 2
    UPDATE = 3  # booted a freshly installed image on trial
    ROLLBACK = 4  # the image on trial never confirmed itself: back to the previous slot


class ReaderFormat:
    WIEGAND = 0
    KEYPAD = 1


class Colour:
    OFF = 0
    RED = 1
    GREEN = 2
    AMBER = 3


MAX_PULSE_MS = 600_000  # ten minutes: anything longer is a hold, sent as SET_OUTPUT
CHUNK_SIZE = 256
SHA256_SIZE = 32
SIGNATURE_SIZE = 64
SIGNED_PREFIX = b"menwei-firmware-v1\x00"

_U32 = ">I"
_PULSE = ">BBI"
_OUTPUT = ">BB"
_LED = ">BBH"
_BUZZER = ">HB"
_STATUS = ">IIBBBBB"
_HEARTBEAT = ">II"
_BOOT = ">IBB"
_INPUT = ">BB"
_READER = ">BBB"
_CHUNK = ">II"
_BEGIN_FIXED = 4 + SHA256_SIZE + SIGNATURE_SIZE


def _unpack(fmt: str, data: bytes) -> tuple[int, ...]:
    """struct.unpack that raises ValueError for a payload of the wrong length (CPython's struct.error is not a
    ValueError, and MicroPython may not have struct.error at all): callers catch one exception."""
    if len(data) != struct.calcsize(fmt):
        raise ValueError(f"payload of {len(data)} bytes, expected {struct.calcsize(fmt)}")
    return tuple(struct.unpack(fmt, data))


def u32(value: int) -> bytes:
    return struct.pack(_U32, value)


def read_u32(payload: bytes) -> int:
    if len(payload) < 4:
        raise ValueError("payload too short for u32")
    return int(_unpack(_U32, payload[:4])[0])


def pack_pulse(output: int, energised: bool, ms: int) -> bytes:
    return struct.pack(_PULSE, output, 1 if energised else 0, ms)


def unpack_pulse(payload: bytes) -> tuple[int, bool, int]:
    output, energised, ms = _unpack(_PULSE, payload)
    return output, bool(energised), ms


def pack_output(output: int, energised: bool) -> bytes:
    return struct.pack(_OUTPUT, output, 1 if energised else 0)


def unpack_output(payload: bytes) -> tuple[int, bool]:
    output, energised = _unpack(_OUTPUT, payload)
    return output, bool(energised)


def pack_led(led: int, colour: int, ms: int) -> bytes:
    return struct.pack(_LED, led, colour, ms)


def unpack_led(payload: bytes) -> tuple[int, int, int]:
    led, colour, ms = _unpack(_LED, payload)
    return led, colour, ms


def pack_buzzer(ms: int, count: int) -> bytes:
    return struct.pack(_BUZZER, ms, count)


def unpack_buzzer(payload: bytes) -> tuple[int, int]:
    ms, count = _unpack(_BUZZER, payload)
    return ms, count


def pack_status(
    boot_id: int,
    uptime_ms: int,
    cause: int,
    slot: int,
    confirmed: bool,
    outputs: int,
    inputs: int,
    version: str,
) -> bytes:
    head = struct.pack(
        _STATUS, boot_id, uptime_ms & 0xFFFFFFFF, cause, slot, 1 if confirmed else 0, outputs, inputs
    )
    return head + version.encode()


def unpack_status(payload: bytes) -> tuple[int, int, int, int, bool, int, int, str]:
    boot_id, uptime, cause, slot, confirmed, outputs, inputs = _unpack(
        _STATUS, payload[: struct.calcsize(_STATUS)]
    )
    version = bytes(payload[struct.calcsize(_STATUS) :]).decode()
    return boot_id, uptime, cause, slot, bool(confirmed), outputs, inputs, version


def pack_inputs(states: list[bool]) -> bytes:
    bitmap = bytearray((len(states) + 7) // 8)
    for i, active in enumerate(states):
        if active:
            bitmap[i // 8] |= 1 << (i % 8)
    return bytes([len(states)]) + bytes(bitmap)


def unpack_inputs(payload: bytes) -> list[bool]:
    count = payload[0]
    if len(payload) < 1 + (count + 7) // 8:
        raise ValueError("input bitmap too short")
    return [bool(payload[1 + i // 8] & (1 << (i % 8))) for i in range(count)]


def pack_heartbeat(boot_id: int, uptime_ms: int) -> bytes:
    return struct.pack(_HEARTBEAT, boot_id, uptime_ms & 0xFFFFFFFF)


def unpack_heartbeat(payload: bytes) -> tuple[int, int]:
    boot_id, uptime = _unpack(_HEARTBEAT, payload)
    return boot_id, uptime


def pack_boot(boot_id: int, cause: int, slot: int, version: str) -> bytes:
    return struct.pack(_BOOT, boot_id, cause, slot) + version.encode()


def unpack_boot(payload: bytes) -> tuple[int, int, int, str]:
    boot_id, cause, slot = _unpack(_BOOT, payload[: struct.calcsize(_BOOT)])
    return boot_id, cause, slot, bytes(payload[struct.calcsize(_BOOT) :]).decode()


def pack_input_event(number: int, active: bool) -> bytes:
    return struct.pack(_INPUT, number, 1 if active else 0)


def unpack_input_event(payload: bytes) -> tuple[int, bool]:
    number, active = _unpack(_INPUT, payload)
    return number, bool(active)


def pack_reader_event(reader: int, fmt: int, bits: int, data: bytes) -> bytes:
    return struct.pack(_READER, reader, fmt, bits) + data


def unpack_reader_event(payload: bytes) -> tuple[int, int, int, bytes]:
    reader, fmt, bits = _unpack(_READER, payload[: struct.calcsize(_READER)])
    return reader, fmt, bits, bytes(payload[struct.calcsize(_READER) :])


def pack_begin(size: int, sha256: bytes, signature: bytes, version: str) -> bytes:
    if len(sha256) != SHA256_SIZE or len(signature) != SIGNATURE_SIZE:
        raise ValueError("sha256 must be 32 bytes and the signature 64")
    return u32(size) + sha256 + signature + version.encode()


def unpack_begin(payload: bytes) -> tuple[int, bytes, bytes, str]:
    if len(payload) < _BEGIN_FIXED:
        raise ValueError("begin payload too short")
    size = read_u32(payload)
    sha = bytes(payload[4 : 4 + SHA256_SIZE])
    sig = bytes(payload[4 + SHA256_SIZE : _BEGIN_FIXED])
    return size, sha, sig, bytes(payload[_BEGIN_FIXED:]).decode()


def pack_chunk(offset: int, crc32: int, data: bytes) -> bytes:
    return struct.pack(_CHUNK, offset, crc32) + data


def unpack_chunk(payload: bytes) -> tuple[int, int, bytes]:
    offset, crc = _unpack(_CHUNK, payload[: struct.calcsize(_CHUNK)])
    return offset, crc, bytes(payload[struct.calcsize(_CHUNK) :])


def pack_nak(code: int, detail: bytes = b"") -> bytes:
    return bytes([code]) + detail


def signed_message(size: int, sha256: bytes, version: str) -> bytes:
    """What the release key signs: the image's digest, its length and its version, under a domain prefix
    so that a signature made for anything else never verifies as a firmware release."""
    return SIGNED_PREFIX + u32(size) + sha256 + version.encode()
