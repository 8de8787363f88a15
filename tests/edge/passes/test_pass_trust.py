"""Trust list rules (a key id always names one key; retirement is final; keys are never forgotten) and its
storage in SQLite."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from edge.passes.errors import PassError, PassErrorReason
from edge.passes.issue import PassSigner
from edge.passes.trust import KeyState, TrustedKey, TrustList, key_id
from edge.store.db import open_db
from edge.store.trust_store import load_trusted_keys, save_trusted_keys, upsert_trusted_key

from .conftest import NOW

HOUR = timedelta(hours=1)


def held(trust: TrustList, k: TrustedKey) -> TrustedKey:
    found = trust.get(k.kid)
    assert found is not None
    return found


def key() -> TrustedKey:
    return PassSigner.generate().trusted_key()


def test_key_id_is_four_bytes_of_the_keys_hash() -> None:
    k = key()
    assert k.kid == key_id(k.public_key) and len(k.kid) == 4


def test_state_follows_retirement_time() -> None:
    k = replace(key(), retired_at=NOW)
    assert k.state_at(NOW - timedelta(seconds=1)) is KeyState.ACTIVE
    assert k.state_at(NOW) is KeyState.RETIRED


def test_a_key_id_cannot_change_its_key() -> None:
    k = key()
    trust = TrustList([k])
    impostor = replace(key(), kid=k.kid)
    with pytest.raises(PassError) as info:
        trust.merge(impostor, NOW)
    assert info.value.reason is PassErrorReason.TRUST_CONFLICT
    with pytest.raises(PassError):
        trust.replace([impostor], 2, NOW)
    assert trust.get(k.kid) == k  # nothing changed


def test_retirement_is_final_but_a_scheduled_one_may_move() -> None:
    k = key()
    trust = TrustList([k])
    trust.retire(k.kid, NOW + HOUR, NOW)  # scheduled
    assert trust.merge(replace(k, retired_at=NOW + 2 * HOUR), NOW).retired_at == NOW + 2 * HOUR  # postponed
    assert trust.merge(k, NOW).retired_at is None  # cancelled
    trust.retire(k.kid, NOW - HOUR, NOW)  # in force
    assert trust.merge(k, NOW).retired_at == NOW - HOUR  # cannot be undone
    assert trust.merge(replace(k, retired_at=NOW + HOUR), NOW).retired_at == NOW - HOUR  # nor postponed
    assert (
        trust.merge(replace(k, retired_at=NOW - 2 * HOUR), NOW).retired_at == NOW - 2 * HOUR
    )  # brought forward


def test_a_full_list_retires_what_it_leaves_out_and_forgets_nothing() -> None:
    a, b, c = key(), key(), key()
    trust = TrustList([a, replace(b, retired_at=NOW - HOUR)])
    trust.replace([c], version=7, now=NOW)
    assert trust.version == 7
    assert held(trust, a).retired_at == NOW
    assert held(trust, b).retired_at == NOW - HOUR
    assert held(trust, c).state_at(NOW) is KeyState.ACTIVE
    # An old list replayed later cannot bring the left-out key back.
    trust.replace([a, c], version=6, now=NOW + HOUR)
    assert held(trust, a).retired_at == NOW


def test_local_key_verifies_until_the_synced_list_speaks_for_it() -> None:
    own = key()
    trust = TrustList()
    trust.add_local(own)
    assert trust.get(own.kid) == own and trust.verifier(own.kid) is not None
    assert trust.keys() == []  # not stored with the synced list
    trust.replace([replace(own, issuer="gateway:gw-1", retired_at=NOW)], 2, NOW)
    trust.add_local(own)  # the gateway re-adds its key after every update: the synced entry wins
    assert held(trust, own).retired_at == NOW


def test_stored_and_loaded(tmp_path: Path) -> None:
    a, b = key(), replace(key(), issuer="gateway:gw-2", retired_at=NOW)
    db = open_db(tmp_path / "t.db")
    try:
        assert load_trusted_keys(db) == ([], 0)
        save_trusted_keys(db, [a, b], 3)
        keys, version = load_trusted_keys(db)
        assert version == 3 and {k.kid: k for k in keys} == {a.kid: a, b.kid: b}
        upsert_trusted_key(db, replace(a, retired_at=NOW + HOUR))
        keys, _ = load_trusted_keys(db)
        assert {k.kid: k.retired_at for k in keys}[a.kid] == NOW + HOUR
    finally:
        db.close()
