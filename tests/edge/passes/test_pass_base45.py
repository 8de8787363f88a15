"""Base45 against RFC 9285's examples, round trips, and refusal of anything that is not exactly Base45."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.passes.base45 import ALPHABET, b45decode, b45encode


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"AB", "BB8"),
        (b"Hello!!", "%69 VD92EX0"),
        (b"base-45", "UJCLQE7W581"),
        (b"ietf!", "QED8WEX0"),
        (b"", ""),
    ],
)
def test_rfc_9285_examples(raw: bytes, encoded: str) -> None:
    assert b45encode(raw) == encoded
    assert b45decode(encoded) == raw


@given(st.binary(max_size=300))
def test_round_trip(data: bytes) -> None:
    text = b45encode(data)
    assert set(text) <= set(ALPHABET)
    assert b45decode(text) == data


@pytest.mark.parametrize(
    "bad",
    ["GGW", "ZZZ", "A", "BB8\n", "bb8", "BB8A", "\u00e9AB"],
    ids=[
        "group-overflow",
        "max-overflow",
        "length-3k+1",
        "trailing-newline",
        "lowercase",
        "3k+1",
        "non-ascii",
    ],
)
def test_refuses_what_is_not_base45(bad: str) -> None:
    with pytest.raises(ValueError, match="Base45"):
        b45decode(bad)
