"""The Wiegand decoder: known frames, parity and length refusals, and properties over every format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.wiegand.decoder import (
    Card,
    WiegandError,
    WiegandErrorReason,
    WiegandFormat,
    decode,
    encode,
    length_of,
)

FIELDS = {  # (facility bits, number bits)
    WiegandFormat.H10301: (8, 16),
    WiegandFormat.H10306: (16, 16),
    WiegandFormat.H10302: (0, 35),
    WiegandFormat.H10304: (16, 19),
}


def test_known_h10301_frame() -> None:
    # Facility 1, card 1: leading parity 1 (one 1 in bits 2-13), trailing parity 0 (one 1 in bits 14-25).
    frame = "10000000100000000000000010"
    assert decode(frame, WiegandFormat.H10301) == Card(WiegandFormat.H10301, 1, 1)
    assert "".join(map(str, encode(WiegandFormat.H10301, 1, 1))) == frame
    assert int(frame, 2) == 0x2020002


def test_known_h10306_and_37_bit_frames() -> None:
    assert decode(encode(WiegandFormat.H10306, 65535, 65535), WiegandFormat.H10306).number == 65535
    assert decode(encode(WiegandFormat.H10302, 2**35 - 1), WiegandFormat.H10302) == Card(
        WiegandFormat.H10302, None, 2**35 - 1
    )
    # The 37-bit formats share parity positions: the same bits decode under either, as different cards.
    bits = encode(WiegandFormat.H10304, 12345, 100)
    assert decode(bits, WiegandFormat.H10304) == Card(WiegandFormat.H10304, 100, 12345)
    assert decode(bits, WiegandFormat.H10302) == Card(WiegandFormat.H10302, None, (100 << 19) | 12345)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("1000000010000000000000001", WiegandErrorReason.LENGTH),
        ("00000000100000000000000010", WiegandErrorReason.PARITY),
        ("10000000100000000000000011", WiegandErrorReason.PARITY),
        ("1000000010000000000000001x", WiegandErrorReason.NOT_BITS),
        ("", WiegandErrorReason.NOT_BITS),
    ],
)
def test_bad_frames_are_refused_with_a_reason(frame: str, reason: WiegandErrorReason) -> None:
    with pytest.raises(WiegandError) as err:
        decode(frame, WiegandFormat.H10301)
    assert err.value.reason is reason


def test_encode_refuses_what_does_not_fit() -> None:
    with pytest.raises(WiegandError):
        encode(WiegandFormat.H10301, 1 << 16, 1)
    with pytest.raises(WiegandError):
        encode(WiegandFormat.H10302, 1, facility=5)


def test_credential_value_checks_the_facility() -> None:
    card = Card(WiegandFormat.H10301, 42, 10001)
    assert card.credential_value() == "10001"
    assert card.credential_value(42) == "10001"
    assert card.credential_value(7) == "42:10001"  # matches no card: denied as unknown


@st.composite
def cards(draw: st.DrawFn) -> Card:
    fmt = draw(st.sampled_from(list(WiegandFormat)))
    facility_bits, number_bits = FIELDS[fmt]
    facility = draw(st.integers(0, 2**facility_bits - 1)) if facility_bits else None
    return Card(fmt, facility, draw(st.integers(0, 2**number_bits - 1)))


@given(cards())
def test_round_trip(card: Card) -> None:
    bits = encode(card.format, card.number, card.facility)
    assert len(bits) == length_of(card.format)
    assert decode(bits, card.format) == card


@given(cards(), st.data())
def test_any_single_bit_error_is_caught(card: Card, data: st.DataObject) -> None:
    bits = encode(card.format, card.number, card.facility)
    i = data.draw(st.integers(0, len(bits) - 1))
    bits[i] ^= 1
    with pytest.raises(WiegandError) as err:
        decode(bits, card.format)
    assert err.value.reason is WiegandErrorReason.PARITY


@given(st.lists(st.integers(0, 1), min_size=0, max_size=64), st.sampled_from(list(WiegandFormat)))
def test_arbitrary_bits_decode_or_raise_wiegand_error(bits: list[int], fmt: WiegandFormat) -> None:
    try:
        card = decode(bits, fmt)
    except WiegandError:
        return
    assert encode(fmt, card.number, card.facility) == bits
