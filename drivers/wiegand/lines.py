"""What a Wiegand-to-serial converter prints per card or key: its line format.

Converters differ: some print the raw bits, some the bit count and the frame in hex, some only the decoded
card number (then the parity was checked, if at all, by the converter). A line format is a regular expression
with named groups, so a new converter is a config entry, not new code:

    bits                  the raw frame as 0/1 characters           -> decoded here, parity checked
    length + hex          bit count and the frame in hex            -> decoded here, parity checked
    number [+ facility]   a card already decoded by the converter
    key                   one keypad key (0-9, * clears, # enters)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.wiegand.decoder import Card, WiegandError, WiegandErrorReason, WiegandFormat, decode

KEY = r"(?P<key>[0-9*#])"
PRESETS = {
    "bits": r"(?P<bits>[01]{4,64})",
    "hex": r"(?:W|Wiegand)?(?P<length>\d{1,2})[:,; ]\s*(?:0x)?(?P<hex>[0-9A-Fa-f]{1,16})",
    "decimal": r"(?P<number>\d{2,20})",
    "facility-number": r"(?P<facility>\d{1,5})[:,/ ](?P<number>\d{1,10})",
}


@dataclass(frozen=True, slots=True)
class Key:
    key: str


class LineFormat:
    def __init__(self, pattern: str) -> None:
        """`pattern` is a preset name or a regular expression; a line must match it whole. A single keypad key
        is understood in every format."""
        self.pattern = re.compile(PRESETS.get(pattern, pattern))
        groups = set(self.pattern.groupindex)
        if not ({"bits"} <= groups or {"hex", "length"} <= groups or "number" in groups):
            raise ValueError(
                "a line format needs a 'bits' group, 'hex' and 'length' groups, or a 'number' group"
            )
        self._key = re.compile(KEY)

    def parse(self, line: str, fmt: WiegandFormat) -> Card | Key:
        """A card or a key. Raises WiegandError for a line that is neither, or a frame that fails its checks."""
        text = line.strip()
        if key := self._key.fullmatch(text):
            return Key(key["key"])
        m = self.pattern.fullmatch(text)
        if m is None:
            raise WiegandError(
                # Not the line itself: a garbled line can still hold most of a card number.
                WiegandErrorReason.NOT_BITS,
                f"line of {len(text)} characters does not match the converter format",
            )
        found = {k: v for k, v in m.groupdict().items() if v is not None}
        if "bits" in found:
            return decode(found["bits"], fmt)
        if "hex" in found:
            length, value = int(found["length"]), int(found["hex"], 16)
            if value >> length:
                raise WiegandError(
                    WiegandErrorReason.LENGTH, f"{len(found['hex'])} hex digits are longer than {length} bits"
                )
            return decode(format(value, f"0{length}b"), fmt)
        facility = int(found["facility"]) if "facility" in found else None
        return Card(fmt, facility, int(found["number"]))
