"""The cloud's pass issuer: its tokens verify on a gateway's verifier with its trust-list entry, and its QR
image reads back to the same token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cbor2
import cv2
import numpy as np
import pytest
from cloud_sync.pass_issuer import PassIssuer

from drivers.qr.decoder import QrDecoder
from edge.passes.claims import PassClaims
from edge.passes.errors import PassError
from edge.passes.token import decode_token


def test_issued_pass_decodes_with_its_claims_and_key() -> None:
    issuer = PassIssuer.generate("lotus-garden")
    now = datetime.now(UTC)
    issued = issuer.issue(
        doors=("side-door",),
        valid_from=now,
        valid_until=now + timedelta(hours=2),
        host_unit="A-1201",
        label="Courier",
    )
    assert issued.token.startswith("MW1:")
    assert issued.qr_version <= 10
    decoded = decode_token(issued.token)
    assert decoded.kid == issuer.trusted_key().kid
    claims = PassClaims.from_map(cbor2.loads(decoded.payload))
    assert claims.pass_id == issued.pass_id
    assert claims.doors == ("side-door",)
    assert claims.max_uses == 1
    assert claims.site == "lotus-garden"
    image = cv2.imdecode(np.frombuffer(issued.qr_png or b"", np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert QrDecoder().decode(image) == [issued.token]


def test_bad_claims_are_refused_at_issue() -> None:
    issuer = PassIssuer.generate("lotus-garden")
    now = datetime.now(UTC)
    with pytest.raises(PassError):
        issuer.issue(doors=("side-door",), valid_from=now, valid_until=now - timedelta(minutes=1))
