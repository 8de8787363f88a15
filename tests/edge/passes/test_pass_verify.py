"""Offline verification: every way a pass is refused, with its reason; the clock-skew allowance at its
boundaries; key rotation and retirement; a clock that cannot be trusted."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from edge.decision import AccessRequest, GatewayState, Reason, evaluate
from edge.model import AccessList, CredentialKind, Door, Reader, Site, Status, VisitorPass
from edge.passes.claims import PassClaims
from edge.passes.clock_guard import ClockGuard
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.issue import PassSigner
from edge.passes.token import PREFIX, encode_token
from edge.passes.trust import TrustList
from edge.passes.verify import REASONS, PassVerifier

from .conftest import MONO, NOW, SITE, SKEW, MakeClaims

GATE = Site(
    id=SITE,
    timezone="Asia/Shanghai",
    doors={
        "main-gate": Door("main-gate", "Main gate", "sim", 1),
        "lobby-a": Door("lobby-a", "Lobby A", "sim", 2),
    },
    readers={"gate-in": Reader("gate-in", "main-gate"), "lobby-in": Reader("lobby-in", "lobby-a")},
)


def refusal(verifier: PassVerifier, token: str, now: datetime = NOW, mono: float = MONO) -> PassError:
    with pytest.raises(PassError) as info:
        verifier.verify(token, now, mono)
    return info.value


def decide(
    claims: PassClaims,
    at: datetime = NOW,
    uses: int = 0,
    acl: AccessList | None = None,
    reader: str = "gate-in",
) -> Reason:
    state = GatewayState(pass_uses={claims.pass_id: uses})
    req = AccessRequest(reader, CredentialKind.PASS, claims.pass_id, at)
    decision = evaluate(
        req, GATE, acl or AccessList(), state, MONO, ZoneInfo("Asia/Shanghai"), claims.to_visitor_pass(SKEW)
    )
    assert decision.credential == claims.pass_id and decision.pass_id == claims.pass_id
    return decision.reason


def test_a_good_pass_verifies_and_is_granted(
    verifier: PassVerifier, signer: PassSigner, make_claims: MakeClaims
) -> None:
    claims = make_claims()
    verified = verifier.verify(signer.issue(claims), NOW, MONO)
    assert verified.claims == claims and verified.kid == signer.kid and verified.issuer == "cloud"
    assert decide(verified.claims) is Reason.GRANTED


def test_every_error_reason_maps_to_a_decision_reason() -> None:
    token_reasons = {
        PassErrorReason.MALFORMED,
        PassErrorReason.UNKNOWN_KEY,
        PassErrorReason.BAD_SIGNATURE,
        PassErrorReason.KEY_RETIRED,
        PassErrorReason.WRONG_SITE,
        PassErrorReason.CLOCK_UNTRUSTED,
    }
    assert set(REASONS) == token_reasons
    assert all(not r.granted for r in REASONS.values())


@pytest.mark.parametrize("text", ["", "12345678", "MW1", "mw1:BB8", "MW2:BB8", "MW1:!!!", "MW1:BB8"])
def test_garbage_is_malformed(verifier: PassVerifier, text: str) -> None:
    assert refusal(verifier, text).reason is PassErrorReason.MALFORMED


def test_random_bytes_are_malformed(verifier: PassVerifier) -> None:
    import os

    from edge.passes.base45 import b45encode

    for _ in range(50):
        assert refusal(verifier, PREFIX + b45encode(os.urandom(150))).reason is PassErrorReason.MALFORMED


def test_unknown_key(verifier: PassVerifier, make_claims: MakeClaims) -> None:
    stranger = PassSigner.generate()
    err = refusal(verifier, stranger.issue(make_claims()))
    assert err.reason is PassErrorReason.UNKNOWN_KEY and err.pass_id is None


def test_forged_signature_under_a_trusted_key_id(
    verifier: PassVerifier, signer: PassSigner, make_claims: MakeClaims
) -> None:
    forger = PassSigner.generate()
    forged = encode_token(make_claims(max_uses=None), signer.kid, forger._key.sign)
    err = refusal(verifier, forged)
    assert err.reason is PassErrorReason.BAD_SIGNATURE
    assert err.pass_id is None  # nothing from a forged pass reaches the log as if it were true


def test_altered_claims_break_the_signature(
    verifier: PassVerifier, signer: PassSigner, make_claims: MakeClaims
) -> None:
    import cbor2

    from edge.passes.base45 import b45decode, b45encode

    token = signer.issue(make_claims())
    tag = cbor2.loads(b45decode(token[4:]))
    protected, _, payload, signature = tag.value
    claims = cbor2.loads(payload)
    claims[-65537][2] = 100  # one-time pass made a hundred-time pass
    altered = PREFIX + b45encode(
        cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(claims), signature]))
    )
    assert refusal(verifier, altered).reason is PassErrorReason.BAD_SIGNATURE


def test_pass_for_another_site(verifier: PassVerifier, signer: PassSigner, make_claims: MakeClaims) -> None:
    err = refusal(verifier, signer.issue(make_claims(site="pine-court")))
    assert err.reason is PassErrorReason.WRONG_SITE and err.pass_id == "V-7K2M9QXD4R"


def test_untrusted_clock_fails_closed(signer: PassSigner, make_claims: MakeClaims) -> None:
    never_synced = PassVerifier(SITE, TrustList([signer.trusted_key()]), ClockGuard(SKEW))
    err = refusal(never_synced, signer.issue(make_claims()))
    assert err.reason is PassErrorReason.CLOCK_UNTRUSTED
    assert "no trusted time" in err.detail


def test_clock_set_back_fails_closed(
    verifier: PassVerifier, signer: PassSigner, make_claims: MakeClaims
) -> None:
    token = signer.issue(make_claims(not_before=NOW - timedelta(days=2)))
    # Wall clock one day behind what the monotonic clock says has passed since the trusted reading.
    err = refusal(verifier, token, now=NOW - timedelta(days=1), mono=MONO + 60)
    assert err.reason is PassErrorReason.CLOCK_UNTRUSTED


# --- time window and clock skew -----------------------------------------------------------------------------


def test_skew_boundaries(make_claims: MakeClaims) -> None:
    claims = make_claims()
    nbf, exp = claims.not_before, claims.expires
    second = timedelta(seconds=1)
    assert decide(claims, at=nbf - SKEW - second) is Reason.PASS_NOT_YET_VALID
    assert decide(claims, at=nbf - SKEW) is Reason.GRANTED  # start inclusive
    assert decide(claims, at=exp + SKEW - second) is Reason.GRANTED
    assert decide(claims, at=exp + SKEW) is Reason.PASS_EXPIRED  # end exclusive


def test_expired_pass_verifies_but_is_refused_as_expired(
    verifier: PassVerifier, signer: PassSigner, make_claims: MakeClaims
) -> None:
    claims = make_claims(not_before=NOW - timedelta(hours=5), expires=NOW - timedelta(hours=1))
    verified = verifier.verify(signer.issue(claims), NOW, MONO)
    assert decide(verified.claims) is Reason.PASS_EXPIRED


def test_doors_uses_and_revocation_are_the_decisions(make_claims: MakeClaims) -> None:
    claims = make_claims(doors=("main-gate",), max_uses=1)
    assert decide(claims, reader="lobby-in") is Reason.PASS_WRONG_DOOR
    assert decide(claims, uses=1) is Reason.PASS_USED_UP
    vp = claims.to_visitor_pass(SKEW)
    revoked = AccessList.build(
        version=1,
        passes=[VisitorPass(vp.id, vp.door_ids, vp.valid_from, vp.valid_until, status=Status.REVOKED)],
    )
    assert decide(claims, acl=revoked) is Reason.PASS_REVOKED
    # An access list entry cannot widen a token's terms: an active entry for all doors changes nothing.
    wide = AccessList.build(
        version=1, passes=[VisitorPass(vp.id, ("main-gate", "lobby-a"), vp.valid_from, vp.valid_until)]
    )
    assert decide(claims, acl=wide, reader="lobby-in") is Reason.PASS_WRONG_DOOR


# --- rotation and retirement --------------------------------------------------------------------------------


def test_rotation_old_passes_live_until_the_old_key_retires(
    make_claims: MakeClaims, guard: ClockGuard
) -> None:
    old, new = PassSigner.generate(), PassSigner.generate()
    trust = TrustList([old.trusted_key()])
    verifier = PassVerifier(SITE, trust, guard)
    old_pass = old.issue(make_claims(pass_id="V-OLD", expires=NOW + timedelta(days=1)))
    # Rotation: the new key is published, signing switches to it, the old key retires after the longest
    # pass lifetime (here one day).
    trust.merge(new.trusted_key(), NOW)
    trust.retire(old.kid, NOW + timedelta(days=1), NOW)
    new_pass = new.issue(make_claims(pass_id="V-NEW"))
    assert verifier.verify(old_pass, NOW, MONO).claims.pass_id == "V-OLD"
    assert verifier.verify(new_pass, NOW, MONO).claims.pass_id == "V-NEW"
    later, later_mono = NOW + timedelta(days=1), MONO + 86400
    err = refusal(verifier, old_pass, now=later, mono=later_mono)
    assert err.reason is PassErrorReason.KEY_RETIRED and err.pass_id == "V-OLD"
    assert verifier.verify(new_pass, later, later_mono).claims.pass_id == "V-NEW"


def test_retirement_ignores_the_passes_claimed_issue_time(make_claims: MakeClaims, guard: ClockGuard) -> None:
    key = PassSigner.generate()
    trust = TrustList([key.trusted_key()])
    trust.retire(key.kid, NOW - timedelta(minutes=1), NOW)  # compromised: retired at once
    backdated = key.issue(make_claims(issued_at=NOW - timedelta(days=30)))
    err = refusal(PassVerifier(SITE, trust, guard), backdated)
    assert err.reason is PassErrorReason.KEY_RETIRED
