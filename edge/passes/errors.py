"""Errors of the visitor-pass layer: one class, PassError, whose `reason` says exactly what went wrong.

Why one class with an enum rather than a class per failure: a denial at the gate must carry a precise,
machine-readable reason into the decision event (edge.decision.Reason), and a caller that only wants to know
"did it verify" catches one type. `detail` is for logs and tests; it never holds the token or a key.
"""

from __future__ import annotations

from enum import StrEnum

from edge.errors import MenweiError


class PassErrorReason(StrEnum):
    # Reading and trusting a token (each maps to a decision reason, see verify.py).
    MALFORMED = "malformed"  # wrong prefix, not Base45, not CBOR, not COSE_Sign1, bad claims
    UNKNOWN_KEY = "unknown_key"  # the key id is not in the trust list
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify under the key named by the key id
    KEY_RETIRED = "key_retired"  # the key verified, but it is retired as of now
    WRONG_SITE = "wrong_site"  # issued for another site
    CLOCK_UNTRUSTED = "clock_untrusted"  # the gateway cannot trust its own clock: fail closed
    # Issuing and walk-in registration.
    INVALID_CLAIMS = "invalid_claims"  # claims that the format cannot carry (too long, bad window, ...)
    INVALID_REQUEST = "invalid_request"  # a walk-in registration the site does not allow
    NO_SIGNING_KEY = "no_signing_key"  # no private key configured to issue with
    NO_RENDERER = "no_renderer"  # the `qr` extra (qrcode, pillow) is not installed
    # Trust list maintenance.
    TRUST_CONFLICT = "trust_conflict"  # an update would change a key's bytes or un-retire it


class PassError(MenweiError):
    """A visitor pass could not be read, trusted, issued, or a trust-list update was refused.

    `pass_id` is set only when the pass id is authentic (the signature verified), so a forged token cannot
    put a chosen id into the event log.
    """

    def __init__(self, reason: PassErrorReason, detail: str = "", *, pass_id: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.pass_id = pass_id
        super().__init__(reason.value + (f": {detail}" if detail else ""))
