"""Use counts shared across a site's gateways: merging is idempotent and order-free, totals feed the decision."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from edge.passes.uses import KEEP_UNKNOWN, UseLedger, UseReport

from .conftest import NOW, SKEW


def test_local_uses_count_and_report() -> None:
    totals: dict[str, int] = {}
    ledger = UseLedger("gw-a", totals)
    assert ledger.record_local("V-1", NOW) == UseReport("V-1", "gw-a", 1, NOW)
    assert ledger.record_local("V-1", NOW).count == 2
    assert totals == {"V-1": 2}


def test_a_one_time_pass_used_at_a_is_used_up_at_b() -> None:
    a_totals: dict[str, int] = {}
    b_totals: dict[str, int] = {}
    a, b = UseLedger("gw-a", a_totals), UseLedger("gw-b", b_totals)
    report = a.record_local("V-1", NOW)
    assert b.merge(report) is True
    assert b_totals["V-1"] == 1  # what evaluate() compares with max_uses
    assert b.merge(report) is False  # delivered twice: no change
    assert b.counts("V-1") == {"gw-a": 1}


def test_uses_counted_before_the_ledger_are_this_gateways() -> None:
    totals = {"V-1": 3, "V-2": 1}
    ledger = UseLedger("gw-a", totals, {"V-1": {"gw-b": 1}})
    assert ledger.counts("V-1") == {"gw-b": 1, "gw-a": 2}
    assert totals == {"V-1": 3, "V-2": 1}


def test_state_round_trip_and_junk() -> None:
    ledger = UseLedger("gw-a", {})
    ledger.record_local("V-1", NOW)
    ledger.merge(UseReport("V-1", "gw-b", 4, NOW))
    assert UseLedger.from_state(ledger.to_state()) == {"V-1": {"gw-a": 1, "gw-b": 4}}
    assert UseLedger.from_state({"V-1": {"gw-a": -1, "gw-b": "x", "gw-c": 2}, "V-2": 3}) == {
        "V-1": {"gw-c": 2}
    }
    assert UseLedger.from_state(None) == {}


_reports = st.lists(
    st.builds(
        UseReport,
        st.sampled_from(["V-1", "V-2"]),
        st.sampled_from(["gw-a", "gw-b", "gw-c"]),
        st.integers(0, 5),
        st.just(NOW),
    ),
    max_size=12,
)


@given(_reports, st.randoms())
def test_merge_order_and_duplicates_do_not_matter(reports: list[UseReport], rnd: random.Random) -> None:
    first: dict[str, int] = {}
    second: dict[str, int] = {}
    one, two = UseLedger("gw-x", first), UseLedger("gw-x", second)
    for r in reports:
        one.merge(r)
    shuffled = reports * 2
    rnd.shuffle(shuffled)
    for r in shuffled:
        two.merge(r)
    assert {k: v for k, v in first.items() if v} == {k: v for k, v in second.items() if v}


# --- rows: what changed, what is forgotten ------------------------------------------------------------------


def test_changes_name_only_the_rows_that_changed() -> None:
    ledger = UseLedger("gw-a", {})
    for i in range(100):
        ledger.merge(UseReport(f"V-{i}", "gw-b", 1, NOW))
    assert len(ledger.take_changes().rows) == 100
    ledger.record_local("V-7", NOW, expires=NOW + SKEW, seen=NOW)
    assert ledger.take_changes().rows == [  # its expiry, learnt now, goes to its other row too
        ("V-7", "gw-a", 1, NOW, NOW + SKEW),
        ("V-7", "gw-b", 1, NOW, NOW + SKEW),
    ]
    ledger.record_local("V-7", NOW)
    assert [r[:3] for r in ledger.take_changes().rows] == [("V-7", "gw-a", 2)]
    assert ledger.merge(UseReport("V-7", "gw-b", 1, NOW)) is False  # nothing new: nothing to write
    assert not ledger.take_changes()
    assert ledger.learn_expiry("V-8", NOW) is True  # every row of the pass carries its expiry
    assert ledger.learn_expiry("V-8", NOW) is False
    assert ledger.learn_expiry("V-NONE", NOW) is False  # not counted here: nothing to remember
    assert ledger.take_changes().rows == [("V-8", "gw-b", 1, None, NOW)]


def test_a_failed_write_is_taken_again() -> None:
    ledger = UseLedger("gw-a", {})
    ledger.record_local("V-1", NOW)
    ledger.forget(["V-1"])
    ledger.record_local("V-2", NOW)
    changes = ledger.take_changes()
    assert (changes.forgotten, [r[:3] for r in changes.rows]) == (["V-1"], [("V-2", "gw-a", 1)])
    ledger.record_local("V-2", NOW)
    ledger.give_back(changes)
    again = ledger.take_changes()
    assert (again.forgotten, [r[:3] for r in again.rows]) == (["V-1"], [("V-2", "gw-a", 2)])


def test_expired_by_expiry_margin_and_keep() -> None:
    ledger = UseLedger("gw-a", {})
    exp = NOW + SKEW
    ledger.record_local("V-1", NOW, expires=exp, seen=NOW)
    ledger.record_local("V-ACL", NOW, expires=exp, seen=NOW)
    ledger.merge(UseReport("V-PEER", "gw-b", 1, NOW))  # no expiry, no seen time yet
    ledger.take_changes()
    first = exp + 2 * SKEW - timedelta(seconds=1)
    assert ledger.expired(first, SKEW) == []
    assert ledger.take_changes().rows == [("V-PEER", "gw-b", 1, first, None)]  # stamped with that LKG
    assert ledger.expired(exp + 2 * SKEW, SKEW, keep=["V-ACL"]) == ["V-1"]
    ledger.forget(["V-1"])
    assert ledger.total("V-1") == 0 and ledger.take_changes().forgotten == ["V-1"]
    assert ledger.expired(first + KEEP_UNKNOWN + 2 * SKEW - timedelta(seconds=1), SKEW) == ["V-ACL"]
    assert ledger.expired(first + KEEP_UNKNOWN + 2 * SKEW, SKEW) == ["V-ACL", "V-PEER"]
