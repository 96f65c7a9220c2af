"""Test certificates: a CA, a server certificate for loopback and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that signed nothing here: its clients must be refused
    other_client_cert: Path
    other_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    name: str,
    *,
    server: bool,
    days: float = 30.0,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate valid from 5 minutes ago for `days` (negative: expired that long ago,
    after a day of validity)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    if days < 0:
        now += datetime.timedelta(days=days - 1)
        days = 1.0
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path, server_days: float = 30.0) -> Pki:
    """Write a fresh CA, server and client certificates (PEM) into `directory`; the
    server's valid for `server_days` (negative: expired that long ago)."""
    pem = serialization.Encoding.PEM
    ca, ca_key = _ca("tidescaler test CA")
    server, server_key = _leaf(ca, ca_key, "localhost", server=True, days=server_days)
    client, client_key = _leaf(ca, ca_key, "keda-operator", server=False)
    other_ca, other_key = _ca("someone else's CA")
    other_client, other_client_key = _leaf(other_ca, other_key, "intruder", server=False)
    paths = Pki(
        *(
            directory / n
            for n in (
                "ca.pem",
                "server.pem",
                "server-key.pem",
                "client.pem",
                "client-key.pem",
                "other-ca.pem",
                "other-client.pem",
                "other-client-key.pem",
            )
        )
    )
    paths.ca_cert.write_bytes(ca.public_bytes(pem))
    paths.server_cert.write_bytes(server.public_bytes(pem))
    _write_key(server_key, paths.server_key)
    paths.client_cert.write_bytes(client.public_bytes(pem))
    _write_key(client_key, paths.client_key)
    paths.other_ca_cert.write_bytes(other_ca.public_bytes(pem))
    paths.other_client_cert.write_bytes(other_client.public_bytes(pem))
    _write_key(other_client_key, paths.other_client_key)
    return paths
