"""Wiegand: the bit-level card formats (decoder.py) and readers behind Wiegand-to-serial converters
(converter.py, with the converter's line format in config: lines.py).

A Wiegand frame is just bits; the format says where the facility code, card number and parity bits are. The
format is configured per reader, because it cannot always be told from the bits: H10302 and H10304 are both
37 bits with the same parity positions. OSDP readers report raw Wiegand bits too and use the same decoder.
"""

from drivers.wiegand.decoder import Card, WiegandError, WiegandFormat, decode, encode

__all__ = ["Card", "WiegandError", "WiegandFormat", "decode", "encode"]
