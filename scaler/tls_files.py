"""The server's TLS files: checked before serving, re-read when they change.

cert-manager and similar tools renew certificates by rewriting the mounted
Secret; a server that read its files once would serve the old certificate
until it expires and then fail every KEDA handshake. gRPC asks for the
certificate configuration on each new connection; `TlsFiles.fetch` answers
from memory unless the files changed (at most one look a second, a few
`stat` calls), and a changed set is served only once OpenSSL accepts it as a
pair: a half-written rotation keeps the last good certificate, with a warning.
SIGHUP (`request_reload`) re-reads the files on the next connection even when
nothing looks changed.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

# The fields of os.stat that change when a file is rewritten or a Secret's
# symlinks are swapped to a new revision.
Signature = tuple[tuple[int, int, int, int] | None, ...]

CHECK_INTERVAL_SECONDS = 1.0


def read_pem(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {flag} {path}: {err.strerror or err}") from None


def check_pair(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Refuse unreadable, malformed or mismatched PEM files, with one line naming which.

    gRPC itself accepts a key that does not belong to its certificate and only
    fails every handshake later; OpenSSL (through `ssl`) checks the pair at once.
    """
    read_pem(cert, "--tls-cert")
    read_pem(key, "--tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err) or "key values mismatch" in str(err):
            raise ValueError(f"--tls-key {key} is not the key of --tls-cert {cert}") from None
        raise ValueError(
            f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and its private key "
            f"({err.reason or err})"
        ) from None
    if client_ca is not None:
        read_pem(client_ca, "--tls-client-ca")
        try:
            context.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as err:
            raise ValueError(
                f"--tls-client-ca {client_ca}: not a PEM CA certificate ({err.reason or err})"
            ) from None


def certificate_expiry(cert: Path) -> float | None:
    """When the (first) certificate in `cert` expires, in Unix seconds; None if unreadable."""
    try:
        parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return None
    return parsed.not_valid_after_utc.timestamp()


def tls_metrics(registry: CollectorRegistry) -> Callable[[str, float | None], None]:
    """Export reloads and the served certificate's expiry; returns `TlsFiles`' `on_load`."""
    reloads = Counter(
        "tidescaler_tls_reloads",
        "Reads of the TLS files: loaded (served) or refused (kept the last good ones)",
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
        self.expiry: float | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that follow the files; ValueError when they are unusable now."""
        initial = self._load()
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
                    configuration = self._load()
                except ValueError as err:
                    # Remembered, so a bad set is reported once, not on every connection.
                    self._signature = signature
                    log.warning(
                        "TLS files changed but cannot be served; keeping the last good "
                        "certificate: %s",
                        err,
                    )
                    self._told("refused")
                    return None
                log.info("TLS files reloaded", extra={"expiry": self.expiry})
                return configuration
        except Exception:  # a raise here would fail the handshake inside gRPC
            log.exception("TLS reload failed; keeping the last good certificate")
            return None

    def _load(self) -> grpc.ServerCertificateConfiguration:
        signature = self._stat()
        check_pair(self.cert, self.key, self.client_ca)
        pair = [(read_pem(self.key, "--tls-key"), read_pem(self.cert, "--tls-cert"))]
        roots = read_pem(self.client_ca, "--tls-client-ca") if self.client_ca else None
        self._signature = signature
        self.expiry = certificate_expiry(self.cert)
        self._told("loaded")
        return grpc.ssl_server_certificate_configuration(pair, root_certificates=roots)

    def _told(self, outcome: str) -> None:
        if self._on_load is not None:
            self._on_load(outcome, self.expiry)

    def _stat(self) -> Signature:
        stats: list[tuple[int, int, int, int] | None] = []
        for path in (self.cert, self.key, self.client_ca):
            if path is None:
                continue
            try:
                st = os.stat(path)  # follows a Secret volume's symlinks to the current revision
            except OSError:
                stats.append(None)
                continue
            stats.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        return tuple(stats)
