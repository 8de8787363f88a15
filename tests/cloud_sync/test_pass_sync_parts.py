"""The pass parts of the contract without a gateway: revoke_pass for a pass the access list does not hold goes
on the revocation list (in the delta's transaction), the trust-list and use-count models refuse what they
must, wire keys convert both ways, and the recommended broker ACL lets every gateway read the site's trust
list and use counts but write only its own counts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cloud_sync import delta_apply
from cloud_sync.kit import mosquitto_acl
from cloud_sync.messages import Delta, PassTrustList, PassUseCount, PassUses, WireTrustedKey
from cloud_sync.topics import Topics
from pydantic import ValidationError

from edge.model import AccessList, Status, VisitorPass
from edge.passes.issue import PassSigner
from edge.passes.trust import TrustedKey
from edge.store.db import open_db, transaction
from edge.store.revocation_store import load_revocations

if TYPE_CHECKING:
    from tests.cloud_sync.conftest import BrokerFactory, ProbeFactory

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SITE = "s1"


def listed() -> AccessList:
    return AccessList.build(version=1, passes=[VisitorPass("v1", ("d1",), NOW, NOW + timedelta(hours=2))])


def revoke(*ops: dict[str, Any]) -> Delta:
    return Delta.model_validate({"from_version": 1, "to_version": 2, "ops": list(ops)})


def test_revoking_an_unlisted_pass_puts_it_on_the_revocation_list(tmp_path: Path) -> None:
    acl = listed()
    until = NOW + timedelta(hours=5)
    d = revoke(
        {"op": "revoke_pass", "id": "v1"},
        {"op": "revoke_pass", "id": "V-QR1", "valid_until": until.isoformat()},
        {"op": "revoke_pass", "id": "V-QR2"},
    )
    actions = delta_apply.resolve(acl, delta_apply.plan(d, NOW))
    assert delta_apply.unlisted_revocations(actions) == {
        "V-QR1": until,
        "V-QR2": NOW + delta_apply.DEFAULT_REVOCATION_KEEP,
    }
    db = open_db(tmp_path / "t.db")
    try:
        with transaction(db):
            delta_apply.write(db, actions)
        assert load_revocations(db) == {"V-QR1": until, "V-QR2": NOW + delta_apply.DEFAULT_REVOCATION_KEEP}
    finally:
        db.close()
    delta_apply.update(acl, actions)
    assert acl.passes["v1"].status is Status.REVOKED  # a listed pass is marked, as before
    assert set(acl.passes) == {"v1"}  # nothing invented in the access list


def test_a_failing_delta_stores_no_revocation(tmp_path: Path) -> None:
    d = revoke({"op": "revoke_pass", "id": "V-QR1"})
    actions = delta_apply.resolve(listed(), delta_apply.plan(d, NOW))
    db = open_db(tmp_path / "t.db")
    try:

        def write_then_fail() -> None:
            with transaction(db):
                delta_apply.write(db, actions)
                raise RuntimeError("the rest of the delta failed")

        with pytest.raises(RuntimeError):
            write_then_fail()
        assert load_revocations(db) == {}
    finally:
        db.close()


def key(signer: PassSigner, **fields: Any) -> dict[str, Any]:
    k = signer.trusted_key()
    return {"kid": k.kid.hex(), "public_key": k.public_key.hex(), **fields}


@pytest.mark.parametrize(
    "keys",
    [
        [{"kid": "", "public_key": "00" * 32}],  # empty key id
        [{"kid": "ab" * 17, "public_key": "00" * 32}],  # 17 bytes
        [{"kid": "ABCD", "public_key": "00" * 32}],  # upper-case hex
        [{"kid": "abcd", "public_key": "00" * 31}],  # short key
        [{"kid": "abcd", "public_key": "00" * 32, "issuer": "someone"}],
        [{"kid": "abcd", "public_key": "00" * 32, "state": "paused"}],
        [{"kid": "abcd", "public_key": "00" * 32, "retired_at": "2026-03-02T09:00:00"}],  # no offset
        [{"kid": "abcd", "public_key": "00" * 32}, {"kid": "abcd", "public_key": "11" * 32}],  # id twice
    ],
)
def test_trust_list_model_refuses(keys: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError):
        PassTrustList.model_validate({"site": SITE, "version": 1, "keys": keys})


def test_wire_keys_convert_both_ways() -> None:
    signer = PassSigner.generate()
    active = TrustedKey(signer.kid, signer.trusted_key().public_key, retired_at=NOW + timedelta(days=1))
    wire = WireTrustedKey.of(active, NOW)
    assert (wire.state, wire.retired_at) == ("active", NOW + timedelta(days=1))
    assert wire.to_domain(NOW) == active
    assert WireTrustedKey.of(active, NOW + timedelta(days=2)).state == "retired"
    # "retired" means retired on arrival at the latest, whatever retired_at says.
    later = WireTrustedKey.model_validate(key(signer, state="retired", retired_at=NOW + timedelta(days=9)))
    assert later.to_domain(NOW).retired_at == NOW
    now_ = WireTrustedKey.model_validate(key(signer, state="retired"))
    assert now_.to_domain(NOW).retired_at == NOW
    walkin = WireTrustedKey.model_validate(key(signer, issuer="gateway:gw-east"))
    assert walkin.to_domain(NOW).issuer == "gateway:gw-east"


def test_use_counts_serialise_with_the_contracts_names() -> None:
    uses = PassUses(gateway="gw-a", uses=[PassUseCount.of("V-1", 2, NOW)])
    assert uses.model_dump(mode="json", by_alias=True) == {
        "gateway": "gw-a",
        "uses": [{"pass": "V-1", "count": 2, "at": "2026-03-02T09:00:00Z"}],
    }
    for bad in ({"pass": "V-1", "count": 0}, {"pass": "", "count": 1}, {"pass_id": "V-1", "count": 1}):
        with pytest.raises(ValidationError):
            PassUses.model_validate({"gateway": "gw-a", "uses": [bad]})


def test_acl_lets_gateways_share_uses_and_read_the_trust_list_only(
    make_broker: BrokerFactory, make_probe: ProbeFactory, tmp_path: Path
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(mosquitto_acl(SITE, ["gw-1", "gw-2"]))
    users = {"backend": "b-pw", "gw-1": "g1-pw", "gw-2": "g2-pw"}
    b = make_broker(allow_anonymous=False, users=users, extra_config=f"acl_file {acl}")
    gw1 = make_probe("gw-1", username="gw-1", password="g1-pw")
    gw2 = make_probe("gw-2", username="gw-2", password="g2-pw")
    backend = make_probe("backend", username="backend", password="b-pw")
    for probe in (gw1, gw2, backend):
        probe.connect(b.host, b.port)
        assert probe.wait_connected()
    t1, t2 = Topics(SITE, "gw-1"), Topics(SITE, "gw-2")
    gw2.subscribe(t2.pass_uses_filter())
    gw2.subscribe(t2.pass_trust)
    own = gw1.publish(t1.pass_uses, b"own")
    spoof = gw1.publish(t2.pass_uses, b"spoof")  # into gw-2's tree: not authorised
    forged = gw1.publish(t1.pass_trust, b"forged")  # the trust list is the backend's
    trust = backend.publish(t1.pass_trust, b"trust")
    assert all(probe.wait_published(mid) for probe, mid in ((gw1, own), (gw1, spoof), (gw1, forged)))
    assert backend.wait_published(trust)
    assert gw2.wait_messages(2)
    time.sleep(0.2)  # a wrongly delivered message would arrive by now
    assert sorted((m.topic, bytes(m.payload)) for m in gw2.messages) == [
        (t1.pass_trust, b"trust"),
        (t1.pass_uses, b"own"),
    ]
