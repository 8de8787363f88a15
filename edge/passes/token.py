"""The pass token: a CWT in a COSE_Sign1 (Ed25519), Base45-encoded behind the prefix "MW1:".

Why this and not pycose or cwt: pycose 1.1 cannot decode with cbor2 >= 6 and cwt needs cbor2 < 6 (see
shared PITFALLS). The subset menwei needs, one algorithm and a key id, is a short function on cbor2 and
cryptography, and a verifier that accepts exactly one shape is easier to trust than a general one.

    token       = "MW1:" Base45(COSE_Sign1_Tagged)
    COSE_Sign1  = #6.18([ protected: bstr .cbor {1: -8, 4: kid}, unprotected: {}, payload: bstr .cbor claims,
                          signature: bstr .size 64 ])
    signed over   Sig_structure = ["Signature1", protected, h'', payload]   (RFC 9052, section 4.4)

The prefix and Base45 keep the whole string in the QR alphanumeric alphabet; "MW1" names the format
version, so a future format is told apart before any byte is decoded. Decoding is strict: one CBOR item with
no trailing bytes, no indefinite lengths, no duplicate keys, exactly the header fields above. Every failure is
PassError(MALFORMED) with a detail for the log; nothing here raises anything else on any input.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from edge.passes.base45 import b45decode, b45encode
from edge.passes.claims import PassClaims
from edge.passes.errors import PassError, PassErrorReason

PREFIX = "MW1:"
COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
SIGNATURE_BYTES = 64
MAX_KID_BYTES = 16
# A pass is about 230 characters; anything far longer is refused before it is decoded.
MAX_TOKEN_CHARS = 1024

Signer = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class SignedToken:
    """A token taken apart but not yet verified: nothing in it is to be believed until the signature is."""

    kid: bytes
    protected: bytes
    payload: bytes
    signature: bytes

    def signed_bytes(self) -> bytes:
        return sig_structure(self.protected, self.payload)


def is_token(text: str) -> bool:
    """Whether a scanned value claims to be a pass token (and so goes to the verifier, not the access list)."""
    return text.startswith(PREFIX)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def encode_token(claims: PassClaims, kid: bytes, sign: Signer) -> str:
    """Sign `claims` with `sign` (an Ed25519 private key's sign method) under key id `kid`."""
    if not 1 <= len(kid) <= MAX_KID_BYTES:
        raise PassError(PassErrorReason.INVALID_CLAIMS, f"key id must be 1-{MAX_KID_BYTES} bytes")
    protected = cbor2.dumps({HEADER_ALG: ALG_EDDSA, HEADER_KID: kid}, canonical=True)
    payload = cbor2.dumps(claims.to_map(), canonical=True)
    signature = sign(sig_structure(protected, payload))
    message = cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    return PREFIX + b45encode(message)


def decode_token(text: str) -> SignedToken:
    """Take a token apart. PassError(MALFORMED) for anything that is not exactly an MW1 token."""
    if not isinstance(text, str):
        raise _malformed("not text")
    if not text.startswith(PREFIX):
        raise _malformed("wrong prefix")
    if len(text) > MAX_TOKEN_CHARS:
        raise _malformed(f"longer than {MAX_TOKEN_CHARS} characters")
    try:
        message = b45decode(text[len(PREFIX) :])
    except ValueError as err:
        raise _malformed(f"not Base45: {err}") from None
    outer = _cbor(message, "COSE_Sign1")
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != COSE_SIGN1_TAG:
        raise _malformed("not a tagged COSE_Sign1")
    parts = outer.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise _malformed("COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise _malformed("protected header, payload and signature must be byte strings")
    if not isinstance(unprotected, Mapping) or unprotected:
        raise _malformed("the unprotected header must be an empty map")
    if len(signature) != SIGNATURE_BYTES:
        raise _malformed(f"signature must be {SIGNATURE_BYTES} bytes")
    header = _cbor(protected, "protected header")
    if not isinstance(header, Mapping) or set(header) != {HEADER_ALG, HEADER_KID}:
        raise _malformed("protected header must hold exactly alg and kid")
    alg, kid = header[HEADER_ALG], header[HEADER_KID]
    if type(alg) is not int or alg != ALG_EDDSA:
        raise _malformed(f"algorithm {alg!r} is not EdDSA (-8)")
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= MAX_KID_BYTES:
        raise _malformed(f"key id must be 1-{MAX_KID_BYTES} bytes")
    return SignedToken(kid=kid, protected=protected, payload=payload, signature=signature)


def decode_claims(token: SignedToken) -> PassClaims:
    """The claims of a token. Call only after its signature verified."""
    return PassClaims.from_map(_cbor(token.payload, "claims"))


def _cbor(data: bytes, what: str) -> Any:
    """Exactly one CBOR item filling `data`; semantic tags come back as objects the type checks refuse."""
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(stream, allow_indefinite=False, allow_duplicate_keys=False, max_depth=8)
    try:
        item = decoder.decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as err:
        raise _malformed(f"{what} is not valid CBOR ({type(err).__name__})") from None
    if stream.tell() != len(data):
        raise _malformed(f"{what} has trailing bytes")
    return item


def _malformed(detail: str) -> PassError:
    return PassError(PassErrorReason.MALFORMED, detail)
