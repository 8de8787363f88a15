"""Wiegand card formats with their parity checks: 26-bit H10301, 34-bit H10306, 37-bit H10302 and H10304.

Every format here has a leading even-parity bit and a trailing odd-parity bit, each over a fixed run of bits
(positions below are 0-based, end exclusive). A frame whose length or parity is wrong is refused with a
WiegandError whose reason says which: a misread card must never become some other resident's card number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class WiegandFormat(StrEnum):
    H10301 = "h10301"  # 26 bits: 8-bit facility, 16-bit card number
    H10306 = "h10306"  # 34 bits: 16-bit facility, 16-bit card number
    H10302 = "h10302"  # 37 bits: 35-bit card number, no facility
    H10304 = "h10304"  # 37 bits: 16-bit facility, 19-bit card number


class WiegandErrorReason(StrEnum):
    LENGTH = "length"
    PARITY = "parity"
    NOT_BITS = "not_bits"
    RANGE = "range"


class WiegandError(ValueError):
    def __init__(self, reason: WiegandErrorReason, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True, slots=True)
class _Layout:
    length: int
    facility: tuple[int, int] | None  # bit range, 0-based, end exclusive
    number: tuple[int, int]
    even: tuple[int, int]  # range covered by the even-parity bit 0
    odd: tuple[int, int]  # range covered by the odd-parity last bit


_LAYOUTS = {
    WiegandFormat.H10301: _Layout(26, (1, 9), (9, 25), even=(1, 13), odd=(13, 25)),
    WiegandFormat.H10306: _Layout(34, (1, 17), (17, 33), even=(1, 17), odd=(17, 33)),
    WiegandFormat.H10302: _Layout(37, None, (1, 36), even=(1, 19), odd=(18, 36)),
    WiegandFormat.H10304: _Layout(37, (1, 17), (17, 36), even=(1, 19), odd=(18, 36)),
}


@dataclass(frozen=True, slots=True)
class Card:
    format: WiegandFormat
    facility: int | None
    number: int

    def credential_value(self, facility: int | None = None) -> str:
        """The access list's card value: the decimal card number. With an expected facility code, a card of
        another facility reads as 'facility:number', which matches no credential and is denied as unknown."""
        if facility is None or self.facility is None or self.facility == facility:
            return str(self.number)
        return f"{self.facility}:{self.number}"


def length_of(fmt: WiegandFormat) -> int:
    return _LAYOUTS[fmt].length


def _field(bits: Sequence[int], span: tuple[int, int]) -> int:
    value = 0
    for bit in bits[span[0] : span[1]]:
        value = (value << 1) | bit
    return value


def _ones(bits: Sequence[int], span: tuple[int, int]) -> int:
    return sum(bits[span[0] : span[1]])


def to_bits(value: str | bytes | Sequence[int]) -> list[int]:
    """'0101...' text, b'0101...' or a sequence of 0/1 ints."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        if not value or set(value) - {"0", "1"}:
            raise WiegandError(WiegandErrorReason.NOT_BITS, "expected a string of 0 and 1")
        return [1 if c == "1" else 0 for c in value]
    bits = list(value)
    if any(b not in (0, 1) for b in bits):
        raise WiegandError(WiegandErrorReason.NOT_BITS, "expected 0 and 1 only")
    return bits


def decode(frame: str | bytes | Sequence[int], fmt: WiegandFormat) -> Card:
    bits = to_bits(frame)
    layout = _LAYOUTS[fmt]
    if len(bits) != layout.length:
        raise WiegandError(WiegandErrorReason.LENGTH, f"{len(bits)} bits, {fmt.value} has {layout.length}")
    if (bits[0] + _ones(bits, layout.even)) % 2 != 0:
        raise WiegandError(WiegandErrorReason.PARITY, "leading even parity")
    if (bits[-1] + _ones(bits, layout.odd)) % 2 != 1:
        raise WiegandError(WiegandErrorReason.PARITY, "trailing odd parity")
    facility = None if layout.facility is None else _field(bits, layout.facility)
    return Card(fmt, facility, _field(bits, layout.number))


def encode(fmt: WiegandFormat, number: int, facility: int | None = None) -> list[int]:
    """The frame a reader would send for this card (for simulators, tests and installers' test cards)."""
    layout = _LAYOUTS[fmt]
    bits = [0] * layout.length
    fields = [(layout.number, number)]
    if layout.facility is not None:
        fields.append((layout.facility, facility or 0))
    elif facility:
        raise WiegandError(WiegandErrorReason.RANGE, f"{fmt.value} has no facility code")
    for (start, end), value in fields:
        width = end - start
        if not 0 <= value < 1 << width:
            raise WiegandError(WiegandErrorReason.RANGE, f"{value} does not fit in {width} bits")
        for i in range(width):
            bits[start + i] = (value >> (width - 1 - i)) & 1
    bits[0] = _ones(bits, layout.even) % 2
    bits[-1] = 1 - _ones(bits, layout.odd) % 2
    return bits
