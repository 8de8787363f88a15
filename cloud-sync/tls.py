"""Throwaway PKI for tests and the demo.

The gateway talks to the cloud over mutual TLS, so tests and the demo need a CA, a server certificate the
client can verify by IP or name, and client certificates the broker can verify. Shipping fixed PEM files would
mean they expire or leak into production; generating them on the fly into a temporary directory costs a few
milliseconds with ``cryptography``. Keys are EC P-256 and certificates live for a day by default: nothing
here is meant to outlive a test run.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertPair", "Pki", "make_test_pki"]

# Certificates start a little in the past so a slightly slow clock on a peer does not reject them.
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class CertPair:
    """PEM paths of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of a generated CA, server certificate and client certificates (keyed by common name)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server: CertPair
    clients: dict[str, CertPair] = field(default_factory=dict)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "menwei test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start: a private key should never be world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    common_name: str,
    *,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    now: datetime,
    valid_for: timedelta,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_test_pki(
    directory: Path | str,
    clients: Iterable[str] = ("gw-1", "cloud"),
    *,
    server_name: str = "localhost",
    valid_for: timedelta = timedelta(days=1),
) -> Pki:
    """Write a fresh CA, a server certificate and one client certificate per name into ``directory``.

    The server certificate carries the SANs ``localhost``, ``server_name`` and ``IP:127.0.0.1`` so clients can
    verify the host name of a local broker. Each client certificate's common name is its name, which a broker
    with ``use_identity_as_username`` takes as the user name. Existing files of the same names are replaced.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("menwei test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_cert_path, ca_key_path = out / "ca.crt", out / "ca.key"
    _write_cert(ca_cert_path, ca_cert)
    _write_key(ca_key_path, ca_key)

    dns_names = dict.fromkeys(["localhost", server_name])  # ordered, without duplicates
    server_sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    server_sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server_cert, server_key = _issue(
        server_name,
        ca_cert=ca_cert,
        ca_key=ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=server_sans,
        now=now,
        valid_for=valid_for,
    )
    server = CertPair(out / "server.crt", out / "server.key")
    _write_cert(server.cert, server_cert)
    _write_key(server.key, server_key)

    pairs: dict[str, CertPair] = {}
    for name in clients:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"client name {name!r} is not usable as a file name")
        cert, key = _issue(
            name,
            ca_cert=ca_cert,
            ca_key=ca_key,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[],
            now=now,
            valid_for=valid_for,
        )
        pair = CertPair(out / f"client-{name}.crt", out / f"client-{name}.key")
        _write_cert(pair.cert, cert)
        _write_key(pair.key, key)
        pairs[name] = pair

    return Pki(directory=out, ca_cert=ca_cert_path, ca_key=ca_key_path, server=server, clients=pairs)
