"""Payload codecs: each pack has an unpack that gives back what went in."""

from __future__ import annotations

from firmware_bridge import protocol as p
from hypothesis import given
from hypothesis import strategies as st


@given(st.lists(st.booleans(), max_size=64))
def test_inputs_bitmap_round_trip(states: list[bool]) -> None:
    assert p.unpack_inputs(p.pack_inputs(states)) == states


def test_codecs_round_trip() -> None:
    assert p.unpack_pulse(p.pack_pulse(3, True, 5000)) == (3, True, 5000)
    assert p.unpack_output(p.pack_output(2, False)) == (2, False)
    assert p.unpack_status(p.pack_status(9, 1234, p.ResetCause.UPDATE, 1, True, 4, 8, "1.2.0")) == (
        9,
        1234,
        p.ResetCause.UPDATE,
        1,
        True,
        4,
        8,
        "1.2.0",
    )
    sha, sig = bytes(range(32)), bytes(64)
    assert p.unpack_begin(p.pack_begin(1000, sha, sig, "2.0")) == (1000, sha, sig, "2.0")
    assert p.unpack_chunk(p.pack_chunk(256, 0xDEADBEEF, b"abc")) == (256, 0xDEADBEEF, b"abc")
    assert p.unpack_reader_event(p.pack_reader_event(1, p.ReaderFormat.WIEGAND, 26, b"\x01\x02\x03\x04")) == (
        1,
        p.ReaderFormat.WIEGAND,
        26,
        b"\x01\x02\x03\x04",
    )
    assert p.unpack_boot(p.pack_boot(5, p.ResetCause.ROLLBACK, 0, "1.0")) == (
        5,
        p.ResetCause.ROLLBACK,
        0,
        "1.0",
    )
