"""Base45 (RFC 9285), strict.

Why our own: the `base45` package (0.4.4, last released 2022) has no type information for mypy --strict and
silently strips a trailing newline before decoding; a verifier should refuse input that is not exactly
Base45. The algorithm is a few lines: every 2 bytes become 3 characters of a 45-letter alphabet that is also
the QR code's alphanumeric alphabet, so a Base45 string fills a QR code in its dense alphanumeric mode.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        e, rest = divmod(n, 45 * 45)
        d, c = divmod(rest, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode `text`; ValueError if it holds a character outside the alphabet, has a length of 3k+1, or a
    group encodes a value too large for its bytes."""
    if len(text) % 3 == 1:
        raise ValueError(f"Base45 length {len(text)} is not 3k or 3k+2")
    try:
        values = [_VALUE[c] for c in text]
    except KeyError as err:
        raise ValueError(f"not a Base45 character: {err.args[0]!r}") from None
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 45 * 45
        if n > 0xFFFF:
            raise ValueError(f"Base45 group at {i} exceeds two bytes")
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise ValueError("Base45 final group exceeds one byte")
        out.append(n)
    return bytes(out)
