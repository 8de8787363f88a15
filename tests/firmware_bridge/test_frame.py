"""Frame layer: COBS and CRC round trips, resynchronisation after noise, and a decoder that survives any bytes."""

from __future__ import annotations

from firmware_bridge.frame import (
    MAX_ENCODED,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameFault,
    FrameType,
    cobs_decode,
    cobs_encode,
    crc16,
    encode_frame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

frames = st.builds(
    Frame,
    st.sampled_from(FrameType.ALL),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    st.binary(max_size=MAX_PAYLOAD),
)


def test_crc16_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=1200))
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


@given(st.lists(frames, max_size=5), st.integers(1, 40))
def test_frames_survive_any_split(items: list[Frame], piece: int) -> None:
    wire = b"".join(encode_frame(f) for f in items)
    decoder = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(wire), piece):
        out += decoder.feed(wire[i : i + piece])
    assert out == items
    assert decoder.faults == {}


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.lists(st.binary(max_size=64), max_size=8))
def test_decoder_never_raises_and_resyncs(noise: bytes, pieces: list[bytes]) -> None:
    """Any byte stream, cut anywhere: no exception, and a good frame after the noise is still decoded."""
    decoder = FrameDecoder()
    for piece in [noise, *pieces]:
        decoder.feed(piece)
    good = Frame(FrameType.COMMAND, 7, 2, b"after the noise")
    assert decoder.feed(encode_frame(good)) == [good]


def test_bad_crc_and_garbage_are_counted_not_raised() -> None:
    good = Frame(FrameType.EVENT, 1, 0x40, b"\x01\x01")
    wire = bytearray(encode_frame(good))
    wire[4] ^= 0x01  # flip one bit inside the stuffed bytes
    decoder = FrameDecoder()
    assert decoder.feed(bytes(wire) + encode_frame(good)) == [good]
    assert sum(decoder.faults.values()) == 1
    assert set(decoder.faults) <= {FrameFault.CRC, FrameFault.COBS}


def test_oversize_is_dropped_up_to_the_next_delimiter() -> None:
    good = Frame(FrameType.ACK, 3, 2)
    decoder = FrameDecoder()
    assert decoder.feed(b"\x01" * (MAX_ENCODED + 10)) == []
    assert decoder.feed(encode_frame(good)) == [good]
    assert decoder.faults == {FrameFault.OVERSIZE: 1}
