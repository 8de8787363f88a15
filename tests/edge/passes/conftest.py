"""Shared makings for the visitor pass tests: a signer (real Ed25519), claims, a trusted clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge.passes.claims import PassClaims
from edge.passes.clock_guard import ClockGuard
from edge.passes.issue import PassSigner
from edge.passes.trust import TrustList
from edge.passes.verify import PassVerifier

SITE = "lotus-garden"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SKEW = timedelta(seconds=120)
MONO = 1000.0

MakeClaims = Callable[..., PassClaims]


@pytest.fixture
def signer() -> PassSigner:
    return PassSigner.generate()


@pytest.fixture
def make_claims() -> MakeClaims:
    def make(**overrides: Any) -> PassClaims:
        fields: dict[str, Any] = {
            "pass_id": "V-7K2M9QXD4R",
            "site": SITE,
            "doors": ("main-gate",),
            "not_before": NOW - timedelta(hours=1),
            "expires": NOW + timedelta(hours=3),
            "issued_at": NOW - timedelta(hours=2),
            "max_uses": 1,
            "host_unit": "A-1201",
            "label": "Courier",
        }
        fields.update(overrides)
        return PassClaims(**fields)

    return make


@pytest.fixture
def guard() -> ClockGuard:
    g = ClockGuard(SKEW)
    g.observe_trusted_time(NOW, MONO, "test")
    return g


@pytest.fixture
def verifier(signer: PassSigner, guard: ClockGuard) -> PassVerifier:
    return PassVerifier(SITE, TrustList([signer.trusted_key()]), guard)
