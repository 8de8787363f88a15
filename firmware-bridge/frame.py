"""Frames on the serial line: COBS-stuffed packets with a CRC-16, separated by zero bytes.

Why this shape: a UART or RS-485 line drops, flips and splits bytes. COBS removes every zero byte from a packet,
so a zero on the wire always means "frame boundary": after any amount of noise the decoder is back in step at
the next zero, and a frame can never be misread as starting in the middle of another. The CRC rejects what
noise leaves inside a frame. Frame size is bounded, so a stuck line or a babbling device cannot make either side
buffer without limit.

One frame on the wire::

    0x00 | COBS( ver:u8 | type:u8 | seq:u16 BE | opcode:u8 | payload:0..MAX_PAYLOAD | crc:u16 BE ) | 0x00

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over everything before it. The leading zero costs one
byte and flushes whatever noise the receiver was holding, so the frame after a burst of garbage is not lost.

This module is shared with the device: it uses only what MicroPython has (struct, plain classes, bytes), and no
typing imports at run time.
"""

import binascii
import struct

_HAVE_HQX = hasattr(binascii, "crc_hqx")  # MicroPython's binascii has no crc_hqx

VERSION = 1
HEADER = ">BBHB"  # version, type, seq, opcode (a format string: MicroPython has no struct.Struct)
HEADER_SIZE = 5
CRC_SIZE = 2
MAX_PAYLOAD = 288  # a 256-byte firmware chunk plus its offset and CRC-32 fit
MAX_RAW = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
# COBS adds one byte per 254 plus one; anything longer between two zeros is not a frame.
MAX_ENCODED = MAX_RAW + MAX_RAW // 254 + 1
DELIMITER = b"\x00"


class FrameType:
    COMMAND = 1  # host -> device, answered by ACK or NAK with the same seq
    ACK = 2
    NAK = 3
    EVENT = 4  # device -> host, answered by ACK with the same seq
    HEARTBEAT = 5  # both ways, never answered

    ALL = (COMMAND, ACK, NAK, EVENT, HEARTBEAT)


class FrameFault:
    """Why a piece of line was not a frame (reason codes, counted by the decoder)."""

    COBS = "cobs"  # the stuffing is broken: a byte was lost or changed
    SHORT = "short"  # fewer bytes than a header and a CRC
    CRC = "crc"
    VERSION = "version"
    TYPE = "type"
    OVERSIZE = "oversize"  # no delimiter within MAX_ENCODED bytes

    ALL = (COBS, SHORT, CRC, VERSION, TYPE, OVERSIZE)


class FrameError(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; crc16(b"123456789") == 0x29B1."""
    if _HAVE_HQX:
        return binascii.crc_hqx(data, 0xFFFF)
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result has no zero byte."""
    out = bytearray(b"\x01")
    code_at = 0
    code = 1
    for byte in data:
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at] = code
            code_at = len(out)
            out.append(1)
            code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise FrameError(FrameFault.COBS, "bad code byte")
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameError(FrameFault.COBS, "zero inside a block")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


class Frame:
    """One decoded frame. `seq` pairs a command with its answer and an event with its ack."""

    def __init__(
        self, type: int, seq: int, opcode: int, payload: bytes = b"", version: int = VERSION
    ) -> None:
        self.type = type
        self.seq = seq
        self.opcode = opcode
        self.payload = payload
        self.version = version

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and (
            self.type,
            self.seq,
            self.opcode,
            self.payload,
            self.version,
        ) == (other.type, other.seq, other.opcode, other.payload, other.version)

    def __hash__(self) -> int:
        return hash((self.type, self.seq, self.opcode, self.payload, self.version))

    def __repr__(self) -> str:
        return (
            f"Frame(type={self.type}, seq={self.seq}, opcode=0x{self.opcode:02x}, payload={self.payload!r})"
        )


def encode_frame(frame: Frame) -> bytes:
    """The bytes to write, delimiters included."""
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    raw = struct.pack(HEADER, frame.version, frame.type, frame.seq & 0xFFFF, frame.opcode) + frame.payload
    raw += struct.pack(">H", crc16(raw))
    return DELIMITER + cobs_encode(raw) + DELIMITER


def decode_frame(encoded: bytes) -> Frame:
    """One frame from the bytes between two delimiters; raises FrameError."""
    if len(encoded) > MAX_ENCODED:
        raise FrameError(FrameFault.OVERSIZE)
    raw = cobs_decode(encoded)
    if len(raw) < HEADER_SIZE + CRC_SIZE:
        raise FrameError(FrameFault.SHORT, f"{len(raw)} bytes")
    body = raw[:-CRC_SIZE]
    (crc,) = struct.unpack(">H", raw[-CRC_SIZE:])
    if crc != crc16(body):
        raise FrameError(FrameFault.CRC)
    version, type_, seq, opcode = struct.unpack(HEADER, body[:HEADER_SIZE])
    if version != VERSION:
        raise FrameError(FrameFault.VERSION, str(version))
    if type_ not in FrameType.ALL:
        raise FrameError(FrameFault.TYPE, str(type_))
    return Frame(type_, seq, opcode, bytes(body[HEADER_SIZE:]), version)


class FrameDecoder:
    """Turns a byte stream, cut anywhere, into frames. Never raises on input: what is not a frame is counted
    in `faults` (reason -> count) and skipped up to the next delimiter."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.faults: dict[str, int] = {}

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        while True:
            end = data.find(DELIMITER, start)
            if end < 0:
                self._take(data[start:])
                return frames
            self._take(data[start:end])
            start = end + 1
            if self._overflow:
                self._count(FrameFault.OVERSIZE)
            elif self._buf:
                try:
                    frames.append(decode_frame(bytes(self._buf)))
                except FrameError as err:
                    self._count(err.reason)
            self._buf = bytearray()
            self._overflow = False

    def _take(self, piece: bytes) -> None:
        if self._overflow or not piece:
            return
        if len(self._buf) + len(piece) > MAX_ENCODED:
            self._overflow = True
            self._buf = bytearray()
        else:
            self._buf += piece

    def _count(self, reason: str) -> None:
        self.faults[reason] = self.faults.get(reason, 0) + 1
