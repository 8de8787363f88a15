"""Visitor passes as signed QR tokens, verified on the gateway with no network (docs/passes.md).

    claims.py       PassClaims: what a pass says, and its CBOR map with integer keys
    token.py        MW1 token: CWT in COSE_Sign1 (Ed25519), Base45 behind the prefix "MW1:"
    base45.py       RFC 9285, strict
    trust.py        TrustList: signing keys by key id, rotation and retirement rules
    clock_guard.py  ClockGuard: last-known-good time; passes fail closed on an untrusted clock
    verify.py       PassVerifier: token -> VerifiedPass, or PassError with the precise reason
    uses.py         UseLedger: per-gateway use counts that merge idempotently across a site
    issue.py        PassSigner and QR rendering (cloud kit, walk-ins)
    walkin.py       WalkInDesk: a guard registers a visitor, the gateway issues and audits the pass
    events.py       PassUseEvent, WalkInEvent
    runtime.py      PassRuntime: all of the above wired into the gateway

Errors: every failure is edge.passes.errors.PassError (a MenweiError) with a PassErrorReason.

runtime and walkin are not re-exported here: they need the config and the store, which import this package.
"""

from edge.passes.claims import PassClaims, whole_seconds
from edge.passes.clock_guard import ClockGuard, kernel_ntp_synchronized
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.issue import PassSigner, new_pass_id, qr_version, render_qr_png, render_qr_text
from edge.passes.token import PREFIX, decode_claims, decode_token, encode_token, is_token
from edge.passes.trust import KeyState, TrustedKey, TrustList, key_id
from edge.passes.uses import UseLedger, UseReport
from edge.passes.verify import REASONS, PassVerifier, VerifiedPass, fingerprint

__all__ = [
    "PREFIX",
    "REASONS",
    "ClockGuard",
    "KeyState",
    "PassClaims",
    "PassError",
    "PassErrorReason",
    "PassSigner",
    "PassVerifier",
    "TrustList",
    "TrustedKey",
    "UseLedger",
    "UseReport",
    "VerifiedPass",
    "decode_claims",
    "decode_token",
    "encode_token",
    "fingerprint",
    "is_token",
    "kernel_ntp_synchronized",
    "key_id",
    "new_pass_id",
    "qr_version",
    "render_qr_png",
    "render_qr_text",
    "whole_seconds",
]
