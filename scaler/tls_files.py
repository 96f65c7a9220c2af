"""The server's TLS files: checked before serving, re-read when they change.

cert-manager and similar tools renew certificates by rewriting the mounted
Secret; a server that read its files once would serve the old certificate
until it expires and then fail every KEDA handshake. gRPC asks for the
certificate configuration on each new connection; `TlsFiles.fetch` answers
from memory unless the files changed (at most one look a second, a few
`stat` calls), and a changed set is served only once it parses, its key is of
a kind gRPC serves and belongs to the certificate: a half-written rotation
keeps the last good certificate, with a warning. A file that cannot be read
for the moment (permissions, descriptors) is tried again a second later.
SIGHUP (`request_reload`) re-reads the files on the next connection even when
nothing looks changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("tidescaler.tls")

# The fields of os.stat that change when a file is rewritten, its permissions are
# fixed, or a Secret's symlinks are swapped to a new revision.
Signature = tuple[tuple[int, ...] | None, ...]

CHECK_INTERVAL_SECONDS = 1.0
# What gRPC's TLS library (BoringSSL) serves; OpenSSL accepts more (Ed448, other
# curves), and a key gRPC refuses would leave the old certificate in place silently.
SERVED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})


class TlsReadError(ValueError):
    """A file could not be read (missing, permissions, out of descriptors): worth a retry."""


@dataclass(frozen=True)
class TlsBytes:
    """The PEM bytes of one read: what is checked is exactly what gRPC is given."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


def read_pem(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TlsReadError(f"cannot read {flag} {path}: {err.strerror or err}") from None


def _key_kind(key: object) -> str | None:
    """The key's kind when gRPC cannot serve it, else None."""
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return None if key.curve.name in SERVED_CURVES else f"EC {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "")


def check_bytes(files: TlsBytes, cert: Path, key: Path, client_ca: Path | None) -> float:
    """Refuse a malformed or mismatched pair, with one line naming which; returns the
    certificate's expiry (Unix seconds).

    gRPC itself accepts a key that does not belong to its certificate and only
    fails every handshake later, so the pair is checked here first.
    """
    pair = f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and its private key"
    try:
        chain = x509.load_pem_x509_certificates(files.cert)
    except ValueError as err:
        raise ValueError(f"{pair} ({err})") from None
    try:
        private = serialization.load_pem_private_key(files.key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ValueError(f"{pair} ({err})") from None
    kind = _key_kind(private)
    if kind is not None:
        raise ValueError(
            f"--tls-key {key}: a key of type {kind}, which gRPC does not serve "
            "(use RSA, ECDSA P-256/P-384/P-521 or Ed25519)"
        )
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise ValueError(f"--tls-key {key} is not the key of --tls-cert {cert}")
    if files.client_ca is not None:
        try:
            x509.load_pem_x509_certificates(files.client_ca)
        except ValueError as err:
            raise ValueError(
                f"--tls-client-ca {client_ca}: not a PEM CA certificate ({err})"
            ) from None
    return chain[0].not_valid_after_utc.timestamp()


def read_files(cert: Path, key: Path, client_ca: Path | None) -> TlsBytes:
    return TlsBytes(
        read_pem(cert, "--tls-cert"),
        read_pem(key, "--tls-key"),
        read_pem(client_ca, "--tls-client-ca") if client_ca is not None else None,
    )


def check_pair(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Refuse unreadable, malformed or mismatched PEM files, with one line naming which."""
    check_bytes(read_files(cert, key, client_ca), cert, key, client_ca)


def tls_metrics(registry: CollectorRegistry) -> Callable[[str, float | None], None]:
    """Export reloads and the served certificate's expiry; returns `TlsFiles`' `on_load`."""
    reloads = Counter(
        "tidescaler_tls_reloads",
        "Reads of the TLS files: loaded (handed to gRPC) or refused (the last good ones kept)",
        ["outcome"],
        registry=registry,
    )
    for outcome in ("loaded", "refused"):
        reloads.labels(outcome)
    expiry = Gauge(
        "tidescaler_tls_certificate_expiry_timestamp_seconds",
        "notAfter of the certificate being served, in Unix seconds",
        registry=registry,
    )

    def on_load(outcome: str, expires_at: float | None) -> None:
        reloads.labels(outcome).inc()
        if outcome == "loaded" and expires_at is not None:
            expiry.set(expires_at)

    return on_load


# A certificate served with less time than this left is said in the log at each load.
EXPIRY_WARNING_SECONDS = 7 * 86_400.0


def _warn_if_expiring(cert: Path, expiry: float, now: float) -> None:
    left = expiry - now
    if left <= 0:
        log.warning(
            "the TLS certificate served has expired: clients that check it refuse the "
            "connection; renew it",
            extra={"tls_cert": str(cert), "expired_hours_ago": round(-left / 3600, 1)},
        )
    elif left < EXPIRY_WARNING_SECONDS:
        log.warning(
            "the TLS certificate served expires soon; renew it",
            extra={"tls_cert": str(cert), "expires_in_hours": round(left / 3600, 1)},
        )


class TlsFiles:
    """A certificate, its key and optionally a client CA, served as they are now on disk."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_load: Callable[[str, float | None], None] | None = None,
    ) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._clock = clock
        # Told each outcome ("loaded" or "refused") and the served certificate's expiry.
        self._on_load = on_load
        self._lock = threading.Lock()
        self._reload = False
        self._checked_at = -float("inf")
        self._signature: Signature = ()
        self._unreadable: Signature | None = None
        self.expiry: float | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that follow the files; ValueError when they are unusable now."""
        initial = self._load(self._stat())
        return grpc.dynamic_ssl_server_credentials(
            initial, self.fetch, require_client_authentication=self.mutual
        )

    def request_reload(self) -> None:
        """Re-read the files on the next new connection, changed or not (SIGHUP)."""
        with self._lock:
            self._reload = True

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's callback on each new connection: a new configuration, or None to keep the last.

        Runs on a gRPC core thread and must never raise."""
        try:
            with self._lock:
                now = self._clock()
                if not self._reload and now - self._checked_at < CHECK_INTERVAL_SECONDS:
                    return None
                self._checked_at = now
                forced, self._reload = self._reload, False
                signature = self._stat()
                if not forced and signature == self._signature:
                    return None
                try:
                    configuration = self._load(signature)
                except TlsReadError as err:
                    # Not remembered: a file that cannot be read now (its permissions about
                    # to be fixed, descriptors exhausted for a moment) is tried again a
                    # second later. Said once per set of files.
                    if signature != self._unreadable:
                        self._unreadable = signature
                        self._refused(err)
                    return None
                except ValueError as err:
                    # Remembered, so a bad set is reported once, not on every connection.
                    self._signature = signature
                    self._refused(err)
                    return None
                log.info("TLS files reloaded", extra={"expiry": self.expiry})
                return configuration
        except Exception:  # a raise here would fail the handshake inside gRPC
            log.exception("TLS reload failed; keeping the last good certificate")
            return None

    def _refused(self, err: ValueError) -> None:
        log.warning(
            "TLS files changed but cannot be served; keeping the last good certificate: %s", err
        )
        self._told("refused")

    def _load(self, signature: Signature) -> grpc.ServerCertificateConfiguration:
        # One read, checked and handed to gRPC as read: a renewal landing between a
        # check and a second read could otherwise give gRPC a pair nobody checked.
        files = read_files(self.cert, self.key, self.client_ca)
        expiry = check_bytes(files, self.cert, self.key, self.client_ca)
        self._signature, self._unreadable, self.expiry = signature, None, expiry
        self._told("loaded")
        _warn_if_expiring(self.cert, expiry, time.time())
        return grpc.ssl_server_certificate_configuration(
            [(files.key, files.cert)], root_certificates=files.client_ca
        )

    def _told(self, outcome: str) -> None:
        if self._on_load is not None:
            self._on_load(outcome, self.expiry)

    def _stat(self) -> Signature:
        stats: list[tuple[int, ...] | None] = []
        for path in (self.cert, self.key, self.client_ca):
            if path is None:
                continue
            try:
                st = os.stat(path)  # follows a Secret volume's symlinks to the current revision
            except OSError:
                stats.append(None)
                continue
            stats.append(
                (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev, st.st_mode)
            )
        return tuple(stats)
