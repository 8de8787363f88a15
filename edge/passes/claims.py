"""The claims a visitor pass carries, and their CBOR map with integer keys (docs/passes.md, "Claims").

Why integer keys and one nested private claim: the pass must fit a QR code a phone shows at a gate, so every
byte counts. The standard CWT claims (RFC 8392) carry what they already define: the site is the audience,
the pass id is the CWT id, and the window and issue time are NumericDates. What CWT has no claim for (doors,
uses, host, label) sits in one map under a single private-use key, so the private key's five-byte label is
paid once, not per claim.

The claims are validated when built, whether by an issuer or by the decoder: a pass the gateway accepts is
always one the issuer could have made. MW1 decoders refuse unknown claim keys, because a claim they ignored
might have been a restriction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.model import VisitorPass
from edge.passes.errors import PassError, PassErrorReason

# Standard CWT claim keys (RFC 8392, section 4).
AUD = 3  # audience: the site id
EXP = 4  # expiration time (exclusive)
NBF = 5  # not before
IAT = 6  # issued at
CTI = 7  # CWT id: the pass id, as UTF-8 bytes
# Private-use claim (keys below -65536 are for private use) holding the pass details map.
PASS = -65537
# Keys inside the PASS map.
DOORS = 1  # array of door ids
MAX_USES = 2  # uint; absent: unlimited inside the window
HOST_UNIT = 3  # text, e.g. "A-1201"
HOST_PERSON = 4  # text: the host resident's person id
LABEL = 5  # text: a minimal visitor label ("Courier", "Ms. Li"); absent: none

_TOP_KEYS = frozenset({AUD, EXP, NBF, IAT, CTI, PASS})
_PASS_KEYS = frozenset({DOORS, MAX_USES, HOST_UNIT, HOST_PERSON, LABEL})

PASS_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")  # as site and door ids in edge.config
PERSON_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
MAX_DOORS = 16
MAX_USES_LIMIT = 65535
MAX_LABEL = 40
MAX_UNIT = 32
# NumericDates are whole seconds from 1970; an unsigned 32-bit value keeps each one five bytes in CBOR.
MIN_TIME = 1
MAX_TIME = 2**32 - 1


@dataclass(frozen=True, slots=True)
class PassClaims:
    pass_id: str
    site: str
    doors: tuple[str, ...]
    not_before: datetime  # inclusive
    expires: datetime  # exclusive
    issued_at: datetime
    max_uses: int | None = None
    host_unit: str | None = None
    host_person_id: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise PassError(PassErrorReason.INVALID_CLAIMS, problem)

    def to_map(self) -> dict[int, Any]:
        details: dict[int, Any] = {DOORS: list(self.doors)}
        if self.max_uses is not None:
            details[MAX_USES] = self.max_uses
        if self.host_unit is not None:
            details[HOST_UNIT] = self.host_unit
        if self.host_person_id is not None:
            details[HOST_PERSON] = self.host_person_id
        if self.label:
            details[LABEL] = self.label
        return {
            CTI: self.pass_id.encode("ascii"),
            AUD: self.site,
            NBF: _seconds(self.not_before),
            EXP: _seconds(self.expires),
            IAT: _seconds(self.issued_at),
            PASS: details,
        }

    @classmethod
    def from_map(cls, claims: object) -> PassClaims:
        """Build claims from a decoded CBOR map; PassError(MALFORMED) saying what is wrong otherwise."""
        try:
            top = _int_keyed(claims, _TOP_KEYS, "claims")
            details = _int_keyed(top[PASS], _PASS_KEYS, "pass claim")
            doors = details[DOORS]
            if not isinstance(doors, list | tuple) or not all(isinstance(d, str) for d in doors):
                raise PassError(PassErrorReason.MALFORMED, "doors must be an array of text")
            cti = top[CTI]
            if not isinstance(cti, bytes):
                raise PassError(PassErrorReason.MALFORMED, "cti must be a byte string")
            return cls(
                pass_id=cti.decode("ascii"),
                site=_text(top[AUD], "aud"),
                doors=tuple(doors),
                not_before=_time(top[NBF], "nbf"),
                expires=_time(top[EXP], "exp"),
                issued_at=_time(top[IAT], "iat"),
                max_uses=_int(details[MAX_USES], "max uses") if MAX_USES in details else None,
                host_unit=_text(details[HOST_UNIT], "host unit") if HOST_UNIT in details else None,
                host_person_id=_text(details[HOST_PERSON], "host") if HOST_PERSON in details else None,
                label=_text(details[LABEL], "label") if LABEL in details else "",
            )
        except KeyError as err:
            raise PassError(PassErrorReason.MALFORMED, f"missing claim {err.args[0]}") from None
        except UnicodeDecodeError:
            raise PassError(PassErrorReason.MALFORMED, "pass id is not ASCII") from None
        except PassError as err:
            if err.reason is PassErrorReason.INVALID_CLAIMS:
                raise PassError(PassErrorReason.MALFORMED, err.detail) from None
            raise

    def to_visitor_pass(self, skew: timedelta) -> VisitorPass:
        """The domain's VisitorPass, its window widened by `skew` at both ends: the allowance for the issuer's
        clock and ours disagreeing (docs/passes.md, "Clock skew")."""
        return VisitorPass(
            id=self.pass_id,
            door_ids=self.doors,
            valid_from=self.not_before - skew,
            valid_until=self.expires + skew,
            max_uses=self.max_uses,
            host_person_id=self.host_person_id,
            host_unit=self.host_unit,
            label=self.label,
        )


def whole_seconds(t: datetime) -> datetime:
    """`t` in UTC without its fraction of a second: what a NumericDate can hold."""
    return t.astimezone(UTC).replace(microsecond=0)


def _problem(c: PassClaims) -> str | None:
    if not PASS_ID.fullmatch(c.pass_id):
        return f"pass id {c.pass_id!r} must be 1-64 letters, digits, '.', '_' or '-'"
    if not SLUG.fullmatch(c.site):
        return f"site {c.site!r} is not a site id"
    if not 1 <= len(c.doors) <= MAX_DOORS:
        return f"a pass names 1-{MAX_DOORS} doors, not {len(c.doors)}"
    for door in c.doors:
        if not SLUG.fullmatch(door):
            return f"door {door!r} is not a door id"
    if len(set(c.doors)) != len(c.doors):
        return "doors repeat"
    for name, t in (("not before", c.not_before), ("expiry", c.expires), ("issued at", c.issued_at)):
        if t.tzinfo is None or t.microsecond:
            return f"{name} must be timezone-aware whole seconds"
        if not MIN_TIME <= t.timestamp() <= MAX_TIME:
            return f"{name} {t.isoformat()} is out of range"
    if c.expires <= c.not_before:
        return "expiry must come after not-before"
    if c.max_uses is not None and not 1 <= c.max_uses <= MAX_USES_LIMIT:
        return f"max uses must be 1-{MAX_USES_LIMIT} or unlimited"
    if c.host_unit is not None and not _printable(c.host_unit, MAX_UNIT):
        return f"host unit must be 1-{MAX_UNIT} printable characters"
    if c.host_person_id is not None and not PERSON_ID.fullmatch(c.host_person_id):
        return "host person id must be 1-64 letters, digits, '.', '_', ':' or '-'"
    if c.label and not _printable(c.label, MAX_LABEL):
        return f"label must be at most {MAX_LABEL} printable characters"
    return None


def _printable(text: str, limit: int) -> bool:
    return 0 < len(text) <= limit and text.isprintable() and text == text.strip()


def _seconds(t: datetime) -> int:
    return int(t.timestamp())


def _int_keyed(value: object, allowed: frozenset[int], what: str) -> Mapping[int, Any]:
    if not isinstance(value, Mapping):
        raise PassError(PassErrorReason.MALFORMED, f"{what} must be a map")
    unknown = [k for k in value if not (type(k) is int and k in allowed)]
    if unknown:
        raise PassError(PassErrorReason.MALFORMED, f"unknown key {unknown[0]!r} in {what}")
    return value


def _int(value: object, what: str) -> int:
    if type(value) is not int:  # bool is an int subclass; CBOR true is not a number
        raise PassError(PassErrorReason.MALFORMED, f"{what} must be an integer")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise PassError(PassErrorReason.MALFORMED, f"{what} must be text")
    return value


def _time(value: object, what: str) -> datetime:
    seconds = _int(value, what)
    if not MIN_TIME <= seconds <= MAX_TIME:
        raise PassError(PassErrorReason.MALFORMED, f"{what} {seconds} is out of range")
    return datetime.fromtimestamp(seconds, UTC)
