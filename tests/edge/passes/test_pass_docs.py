"""The worked example in docs/passes.md is what the code produces, byte for byte (Ed25519 is deterministic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner, qr_version
from edge.passes.token import PREFIX

DOC = Path(__file__).resolve().parents[3] / "docs" / "passes.md"


def test_worked_example_matches_the_code() -> None:
    signer = PassSigner.from_private_bytes(bytes(range(32)))
    nbf = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    claims = PassClaims(
        pass_id="V-7K2M9QXD4R",
        site="lotus-garden",
        doors=("main-gate",),
        not_before=nbf,
        expires=nbf + timedelta(hours=4),
        issued_at=nbf - timedelta(hours=20),
        max_uses=1,
        host_unit="A-1201",
        label="Courier",
    )
    token = signer.issue(claims)
    text = DOC.read_text()
    [documented] = [line for line in text.splitlines() if line.startswith(PREFIX)]
    assert documented == token
    assert signer.public_key.hex() in text and signer.kid.hex() in text
    assert f"Token ({len(token)} characters" in text
    assert qr_version(token) == 9
