"""Issuing passes: sign claims with an Ed25519 private key, and render the token as a QR code.

Used by the cloud kit (the property's cloud issues most passes) and by the gateway for walk-in visitors.
Rendering needs the `qr` extra (qrcode + Pillow); it is imported only when a QR is drawn, so a gateway that
only verifies never loads it.

QR parameters (docs/passes.md, "QR code"): error correction M (15 %: survives a scuffed print or a glare spot
on a phone screen without growing the code much), alphanumeric mode (the token is all in that alphabet), the
smallest version that fits: 9 for a typical pass.
"""

from __future__ import annotations

import io
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.passes.claims import PassClaims
from edge.passes.errors import PassError, PassErrorReason
from edge.passes.token import encode_token
from edge.passes.trust import CLOUD, TrustedKey, key_id

_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U to misread


def new_pass_id(prefix: str = "V", length: int = 10) -> str:
    """A random pass id such as 'V-7K2M9QXD4R' (50 bits); short, because it is inside every token."""
    return prefix + "-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class PassSigner:
    """An Ed25519 private key that signs passes under its key id."""

    def __init__(
        self, private_key: Ed25519PrivateKey, *, issuer: str = CLOUD, kid: bytes | None = None
    ) -> None:
        self._key = private_key
        self.issuer = issuer
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = kid if kid is not None else key_id(self.public_key)

    @classmethod
    def from_private_bytes(cls, raw: bytes, *, issuer: str = CLOUD) -> PassSigner:
        if len(raw) != 32:
            raise PassError(PassErrorReason.NO_SIGNING_KEY, "an Ed25519 private key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(raw), issuer=issuer)

    @classmethod
    def generate(cls, *, issuer: str = CLOUD) -> PassSigner:
        return cls(Ed25519PrivateKey.generate(), issuer=issuer)

    def trusted_key(self) -> TrustedKey:
        """The trust list entry that lets gateways verify this signer's passes."""
        return TrustedKey(kid=self.kid, public_key=self.public_key, issuer=self.issuer)

    def issue(self, claims: PassClaims) -> str:
        return encode_token(claims, self.kid, self._key.sign)


def _qr(token: str) -> Any:
    try:
        import qrcode
        from qrcode.constants import ERROR_CORRECT_M
    except ImportError:
        raise PassError(PassErrorReason.NO_RENDERER, "install menwei[qr] to render QR codes") from None
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=4)
    code.add_data(token, optimize=0)  # one alphanumeric segment
    code.make(fit=True)
    return code


def qr_version(token: str) -> int:
    """The QR version (size) the token needs at error correction M."""
    version: int = _qr(token).version
    return version


def render_qr_png(token: str, *, box_size: int = 8) -> bytes:
    """The token as a black-on-white QR code PNG, `box_size` pixels per module, with the standard 4-module
    quiet zone."""
    code = _qr(token)
    code.box_size = box_size
    buffer = io.BytesIO()
    code.make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def render_qr_text(token: str) -> str:
    """The token as a QR code drawn with block characters, for a guard's terminal or a receipt printer."""
    out = io.StringIO()
    _qr(token).print_ascii(out=out)
    return out.getvalue()
