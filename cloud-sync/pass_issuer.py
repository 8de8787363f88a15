"""Issuing visitor passes on the cloud side: the property app's "invite a visitor" ends here.

A pass is a signed token (edge/passes, docs/passes.md) that any gateway of the site verifies offline, so
issuing needs no round trip to a gateway: sign the claims with the site's issuing key, hand the token (or its QR
image) to the resident, and make sure the key is on the trust list the gateways hold (`trusted_key()` is the
entry for CloudKit.push_trust_list). The private key stays in the backend's own secret store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from edge.passes.claims import PassClaims
from edge.passes.issue import PassSigner, new_pass_id, qr_version, render_qr_png
from edge.passes.trust import TrustedKey


@dataclass(frozen=True, slots=True)
class IssuedPass:
    pass_id: str
    token: str
    qr_png: bytes | None  # None when rendering was not asked for
    qr_version: int


class PassIssuer:
    def __init__(self, signer: PassSigner, site: str) -> None:
        self.signer = signer
        self.site = site

    @classmethod
    def generate(cls, site: str) -> PassIssuer:
        """A fresh issuing key (tests, demos, a first installation)."""
        return cls(PassSigner.generate(), site)

    @classmethod
    def from_private_bytes(cls, raw: bytes, site: str) -> PassIssuer:
        return cls(PassSigner.from_private_bytes(raw), site)

    def trusted_key(self) -> TrustedKey:
        return self.signer.trusted_key()

    def issue(
        self,
        *,
        doors: tuple[str, ...],
        valid_from: datetime,
        valid_until: datetime,
        max_uses: int | None = 1,
        host_unit: str | None = None,
        host_person_id: str | None = None,
        label: str = "",
        pass_id: str | None = None,
        render: bool = True,
    ) -> IssuedPass:
        """Sign a pass. Claims are checked (PassError on a bad window, no doors, a too-long label...). Times
        are carried in whole seconds: the window is cut to them."""
        claims = PassClaims(
            pass_id=pass_id or new_pass_id(),
            site=self.site,
            doors=doors,
            not_before=valid_from.replace(microsecond=0),
            expires=valid_until.replace(microsecond=0),
            issued_at=datetime.now(UTC).replace(microsecond=0),
            max_uses=max_uses,
            host_unit=host_unit,
            host_person_id=host_person_id,
            label=label,
        )
        token = self.signer.issue(claims)
        return IssuedPass(
            pass_id=claims.pass_id,
            token=token,
            qr_png=render_qr_png(token) if render else None,
            qr_version=qr_version(token),
        )
