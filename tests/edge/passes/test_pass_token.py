"""The MW1 token: its exact structure, its size, and a decoder that refuses every malformation with a reason
and never raises anything else, whatever it is given."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.passes import claims as c
from edge.passes.base45 import b45decode, b45encode
from edge.passes.clock_guard import ClockGuard
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.issue import PassSigner, qr_version
from edge.passes.token import PREFIX, decode_claims, decode_token, is_token, sig_structure
from edge.passes.verify import PassVerifier, VerifiedPass

from .conftest import MONO, NOW, MakeClaims


def _cose(token: str) -> cbor2.CBORTag:
    tag = cbor2.loads(b45decode(token[len(PREFIX) :]))
    assert isinstance(tag, cbor2.CBORTag)
    return tag


def _token(message: object) -> str:
    return PREFIX + b45encode(cbor2.dumps(message))


def test_structure_is_cose_sign1_with_eddsa_and_kid(signer: PassSigner, make_claims: MakeClaims) -> None:
    token = signer.issue(make_claims())
    assert is_token(token) and token.startswith("MW1:")
    tag = _cose(token)
    assert tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    assert cbor2.loads(protected) == {1: -8, 4: signer.kid}
    assert dict(unprotected) == {}
    assert len(signature) == 64
    claims = cbor2.loads(payload)
    assert set(claims) == {3, 4, 5, 6, 7, -65537}
    assert claims[7] == b"V-7K2M9QXD4R" and claims[3] == "lotus-garden"
    assert claims[-65537] == {1: ["main-gate"], 2: 1, 3: "A-1201", 5: "Courier"}
    signer_key = signer._key.public_key()
    signer_key.verify(signature, sig_structure(protected, payload))  # RFC 9052 Sig_structure, empty aad


def test_round_trip_and_size(signer: PassSigner, make_claims: MakeClaims) -> None:
    claims = make_claims()
    token = signer.issue(claims)
    assert decode_claims(decode_token(token)) == claims
    # docs/passes.md: a typical pass is ~250 characters, QR version 9 at error correction M.
    assert 200 <= len(token) <= 262
    assert qr_version(token) == 9


def test_optional_claims_are_left_out(signer: PassSigner, make_claims: MakeClaims) -> None:
    claims = make_claims(max_uses=None, host_unit=None, label="")
    token = signer.issue(claims)
    assert cbor2.loads(_cose(token).value[2])[-65537] == {1: ["main-gate"]}
    assert decode_claims(decode_token(token)) == claims


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "wrong prefix"),
        ("HC1:6BF+70790T9WJWG.FKY*4GO0", "wrong prefix"),
        ("MW1:", "not valid CBOR"),
        ("MW1:bb8", "not Base45"),
        ("MW1:" + "A" * 2000, "longer than"),
        ("MW1:" + b45encode(cbor2.dumps([1, 2, 3, 4])), "tagged COSE_Sign1"),
        ("MW1:" + b45encode(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""]))), "array of 4"),
    ],
)
def test_malformed_tokens_say_why(text: str, detail: str) -> None:
    with pytest.raises(PassError, match=detail) as info:
        decode_token(text)
    assert info.value.reason is PassErrorReason.MALFORMED


def test_truncated_tokens_are_malformed(signer: PassSigner, make_claims: MakeClaims) -> None:
    token = signer.issue(make_claims())
    for cut in (5, 50, len(token) // 2, len(token) - 3, len(token) - 1):
        with pytest.raises(PassError) as info:
            decode_token(token[:cut])
        assert info.value.reason is PassErrorReason.MALFORMED


def test_header_and_trailer_tampering_is_malformed(signer: PassSigner, make_claims: MakeClaims) -> None:
    protected, _, payload, signature = _cose(signer.issue(make_claims())).value
    cases = {
        "trailing bytes": PREFIX
        + b45encode(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature])) + b"\0"),
        "unprotected": _token(cbor2.CBORTag(18, [protected, {4: b"x"}, payload, signature])),
        "alg": _token(cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: b"abcd"}), {}, payload, signature])),
        "extra header": _token(
            cbor2.CBORTag(18, [cbor2.dumps({1: -8, 4: b"abcd", 2: [1]}), {}, payload, signature])
        ),
        "kid type": _token(cbor2.CBORTag(18, [cbor2.dumps({1: -8, 4: "abcd"}), {}, payload, signature])),
        "short signature": _token(cbor2.CBORTag(18, [protected, {}, payload, signature[:63]])),
        "other tag": _token(cbor2.CBORTag(98, [protected, {}, payload, signature])),
    }
    for name, token in cases.items():
        with pytest.raises(PassError) as info:
            decode_token(token)
        assert info.value.reason is PassErrorReason.MALFORMED, name


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda m: m.pop(4), "missing claim 4"),
        (lambda m: m.update({8: 1}), "unknown key 8"),
        (lambda m: m[-65537].update({9: 1}), "unknown key 9"),
        (lambda m: m.update({4: True}), "exp must be an integer"),
        (lambda m: m.update({5: 2**40}), "out of range"),
        (lambda m: m.update({7: "V-1"}), "cti must be a byte string"),
        (lambda m: m[-65537].update({1: "main-gate"}), "doors must be an array"),
        (lambda m: m[-65537].update({1: []}), "1-16 doors"),
        (lambda m: m.update({4: m[5]}), "expiry must come after"),
        (lambda m: m.update({3: "Not A Slug"}), "not a site id"),
    ],
)
def test_bad_claims_are_malformed(
    make_claims: MakeClaims, mutate: Callable[[dict[int, Any]], object], detail: str
) -> None:
    claims_map = make_claims().to_map()
    mutate(claims_map)
    with pytest.raises(PassError, match=detail) as info:
        c.PassClaims.from_map(claims_map)
    assert info.value.reason is PassErrorReason.MALFORMED


def test_issuer_cannot_make_claims_the_format_cannot_carry(make_claims: MakeClaims) -> None:
    for overrides in ({"label": "x" * 41}, {"max_uses": 0}, {"doors": ("a", "a")}, {"pass_id": "bad id"}):
        with pytest.raises(PassError) as info:
            make_claims(**overrides)
        assert info.value.reason is PassErrorReason.INVALID_CLAIMS


# --- fuzz: the decoder and verifier never crash, and always give a reason -----------------------------------

_SETTINGS = settings(
    max_examples=int(os.environ.get("MENWEI_FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _outcome(verifier: PassVerifier, text: str) -> VerifiedPass | PassErrorReason:
    try:
        return verifier.verify(text, NOW, MONO)
    except PassError as err:
        return err.reason


def _verify_never_crashes(verifier: PassVerifier, text: str) -> None:
    assert isinstance(_outcome(verifier, text), VerifiedPass | PassErrorReason)


@_SETTINGS
@given(st.text(max_size=400))
def test_fuzz_arbitrary_text(verifier: PassVerifier, text: str) -> None:
    _verify_never_crashes(verifier, text)
    _verify_never_crashes(verifier, PREFIX + text)


@_SETTINGS
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes_behind_the_prefix(verifier: PassVerifier, data: bytes) -> None:
    _verify_never_crashes(verifier, PREFIX + b45encode(data))


@_SETTINGS
@given(data=st.data())
def test_fuzz_mutated_real_tokens(
    verifier: PassVerifier, signer: PassSigner, make_claims: MakeClaims, data: st.DataObject
) -> None:
    raw = bytearray(b45decode(signer.issue(make_claims())[len(PREFIX) :]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _verify_never_crashes(verifier, PREFIX + b45encode(bytes(raw[:cut])))


_cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.binary(max_size=20) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(-70000, 10) | st.text(max_size=3), inner, max_size=5)
    ),
    max_leaves=20,
)


@_SETTINGS
@given(
    protected=_cbor_values, unprotected=_cbor_values, payload=_cbor_values, signature=st.binary(max_size=70)
)
def test_fuzz_structured_cose_shapes(
    verifier: PassVerifier, protected: object, unprotected: object, payload: object, signature: bytes
) -> None:
    message = cbor2.CBORTag(18, [cbor2.dumps(protected), unprotected, cbor2.dumps(payload), signature])
    _verify_never_crashes(verifier, _token(message))


def test_clock_guard_fixture_is_trusted(guard: ClockGuard) -> None:
    assert guard.is_trustworthy(NOW, MONO)
