"""Firmware release files: the image, its version and the operator's Ed25519 signature in one file.

    b"MWFW1\\n" | version_len:u8 | version:utf-8 | signature:64 | image_len:u32 | image

The signature is over protocol.signed_message(size, sha256(image), version), the same bytes the device checks
with the release public key it was provisioned with. The gateway only carries the file: it holds no key that
could make a board accept an image, and the board checks everything itself.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from firmware_bridge.errors import UpdateError, UpdateErrorReason
from firmware_bridge.protocol import SIGNATURE_SIZE, signed_message

MAGIC = b"MWFW1\n"


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    image: bytes
    signature: bytes

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.image).digest()


def sign_release(key: Ed25519PrivateKey, image: bytes, version: str) -> Release:
    digest = hashlib.sha256(image).digest()
    return Release(version, image, key.sign(signed_message(len(image), digest, version)))


def pack_release(release: Release) -> bytes:
    version = release.version.encode()
    if not 0 < len(version) < 256 or len(release.signature) != SIGNATURE_SIZE:
        raise ValueError("version must be 1-255 bytes and the signature 64")
    return (
        MAGIC
        + bytes([len(version)])
        + version
        + release.signature
        + struct.pack(">I", len(release.image))
        + release.image
    )


def parse_release(data: bytes) -> Release:
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not a menwei firmware release (bad magic)")
        at = len(MAGIC)
        vlen = data[at]
        version = data[at + 1 : at + 1 + vlen].decode()
        at += 1 + vlen
        signature = data[at : at + SIGNATURE_SIZE]
        at += SIGNATURE_SIZE
        (size,) = struct.unpack(">I", data[at : at + 4])
        image = data[at + 4 :]
        if len(image) != size or len(signature) != SIGNATURE_SIZE or not version:
            raise ValueError("truncated release file")
    except (ValueError, IndexError, struct.error) as err:
        raise UpdateError(UpdateErrorReason.BAD_RELEASE, str(err)) from err
    return Release(version, image, signature)
