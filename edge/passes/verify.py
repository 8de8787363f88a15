"""Offline verification of a pass token: a verified pass, or PassError with the precise reason.

The checks, in the order their reasons are given (the first failure decides):

    malformed -> unknown key -> bad signature -> malformed claims -> wrong site -> clock untrusted -> key retired

Why this order: nothing in a token is believed before its signature verifies, so a forged token is refused as
forged whatever it claims; the site is independent of time; retirement is judged by the gateway's clock, so
the clock must be trusted first. The time window, doors, uses and revocation are the decision engine's
(edge.decision.evaluate with the verified pass), like those of any other pass.

Memory only: the trust list caches parsed keys, and the clock guard is arithmetic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature

from edge.decision import Reason
from edge.passes.claims import PassClaims
from edge.passes.clock_guard import ClockGuard
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.token import decode_claims, decode_token
from edge.passes.trust import KeyState, TrustList

REASONS: dict[PassErrorReason, Reason] = {
    PassErrorReason.MALFORMED: Reason.PASS_MALFORMED,
    PassErrorReason.UNKNOWN_KEY: Reason.PASS_UNKNOWN_KEY,
    PassErrorReason.BAD_SIGNATURE: Reason.PASS_BAD_SIGNATURE,
    PassErrorReason.KEY_RETIRED: Reason.PASS_KEY_RETIRED,
    PassErrorReason.WRONG_SITE: Reason.PASS_WRONG_SITE,
    PassErrorReason.CLOCK_UNTRUSTED: Reason.CLOCK_UNTRUSTED,
}


@dataclass(frozen=True, slots=True)
class VerifiedPass:
    claims: PassClaims
    kid: bytes
    issuer: str  # of the key: "cloud" or "gateway:<id>"


class PassVerifier:
    def __init__(self, site_id: str, trust: TrustList, clock: ClockGuard) -> None:
        self.site_id = site_id
        self.trust = trust
        self.clock = clock

    def verify(self, token: str, now: datetime, mono: float) -> VerifiedPass:
        signed = decode_token(token)
        key = self.trust.get(signed.kid)
        verifier = self.trust.verifier(signed.kid)
        if key is None or verifier is None:
            raise PassError(PassErrorReason.UNKNOWN_KEY, f"key id {signed.kid.hex()}")
        try:
            verifier.verify(signed.signature, signed.signed_bytes())
        except InvalidSignature:
            raise PassError(PassErrorReason.BAD_SIGNATURE, f"key id {signed.kid.hex()}") from None
        claims = decode_claims(signed)
        pid = claims.pass_id
        if claims.site != self.site_id:
            raise PassError(PassErrorReason.WRONG_SITE, f"issued for site {claims.site!r}", pass_id=pid)
        distrust = self.clock.distrust(now, mono)
        if distrust is not None:
            raise PassError(PassErrorReason.CLOCK_UNTRUSTED, distrust, pass_id=pid)
        if key.state_at(now) is KeyState.RETIRED:
            assert key.retired_at is not None
            raise PassError(
                PassErrorReason.KEY_RETIRED,
                f"key id {signed.kid.hex()} retired at {key.retired_at.isoformat()}",
                pass_id=pid,
            )
        return VerifiedPass(claims=claims, kid=signed.kid, issuer=key.issuer)


def fingerprint(token: str) -> str:
    """What the event log records for a token that did not verify: never the token, and never an id taken
    from unverified bytes, but enough to see the same bad token presented again."""
    return "token:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]
