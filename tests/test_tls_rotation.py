"""Certificates rotated under a running server: real TLS over real gRPC on loopback.

The files are laid out as the kubelet lays out a mounted Secret (each key a
symlink through `..data` to a timestamped folder, swapped atomically on
update), which is how cert-manager's renewals reach the pod.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from certs import Pki, make_pki
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from prometheus_server import free_port
from serve_process import serve_process, stopped

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.server import RunningServer, ServerConfig, start_server
from scaler.tls_files import CHECK_INTERVAL_SECONDS, TlsFiles, check_pair, tls_metrics

ALWAYS = {"timezone": "UTC", "start": "0 0 1 1 *", "end": "* * * * *", "desiredReplicas": "3"}


class SecretVolume:
    """A folder as the kubelet mounts a TLS Secret: tls.crt, tls.key, ca.crt."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.revision = 0

    def publish(self, cert: Path, key: Path, ca: Path) -> None:
        self.revision += 1
        folder = self.root / f"..2026_12_01_00_00_0{self.revision}"
        folder.mkdir()
        for name, source in (("tls.crt", cert), ("tls.key", key), ("ca.crt", ca)):
            shutil.copyfile(source, folder / name)
        staging = self.root / "..data_tmp"
        staging.symlink_to(folder.name)
        old = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        os.replace(staging, self.root / "..data")  # atomic, as the kubelet does
        for name in ("tls.crt", "tls.key", "ca.crt"):
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if old is not None:
            shutil.rmtree(old)

    @property
    def cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls.key"

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"


def ref() -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="web", namespace="shop", scalerMetadata=ALWAYS)


def answered(port: int, ca: Path, client: tuple[Path, Path] | None = None) -> bool:
    """Whether a new connection trusting `ca` (and showing `client`) gets an answer."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        try:
            pb_grpc.ExternalScalerStub(channel).IsActive(ref(), timeout=3)
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.UNAVAILABLE, error
            return False
        return True


def eventually(condition: object, timeout_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.2)


@dataclass(frozen=True)
class Renewal:
    volume: SecretVolume  # published with `old`
    old: Pki
    new: Pki


@pytest.fixture
def renewal(tmp_path: Path) -> Renewal:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old, new = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    volume = SecretVolume(tmp_path / "secret")
    volume.publish(old.server_cert, old.server_key, old.ca_cert)
    return Renewal(volume, old, new)


def serve(volume: SecretVolume, *, mutual: bool, registry: CollectorRegistry) -> RunningServer:
    return start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            tls_cert=volume.cert,
            tls_key=volume.key,
            tls_client_ca=volume.ca if mutual else None,
        ),
        tls_on_load=tls_metrics(registry),
    )


def expiry_of(cert: Path) -> float:
    return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp()


def test_a_renewed_secret_is_served_to_new_connections_without_a_restart(
    renewal: Renewal,
) -> None:
    volume, old, new = renewal.volume, renewal.old, renewal.new
    registry = CollectorRegistry()
    running = serve(volume, mutual=True, registry=registry)
    try:
        assert answered(running.port, old.ca_cert, (old.client_cert, old.client_key))
        assert registry.get_sample_value(
            "tidescaler_tls_certificate_expiry_timestamp_seconds"
        ) == expiry_of(old.server_cert)

        volume.publish(new.server_cert, new.server_key, new.ca_cert)
        # New connections get the new certificate and trust the new client CA ...
        eventually(lambda: answered(running.port, new.ca_cert, (new.client_cert, new.client_key)))
        # ... and no longer the old ones.
        assert not answered(running.port, old.ca_cert, (old.client_cert, old.client_key))
        assert not answered(running.port, new.ca_cert, (old.client_cert, old.client_key))
        loaded = registry.get_sample_value("tidescaler_tls_reloads_total", {"outcome": "loaded"})
        assert loaded == 2  # at start, then the renewal
        assert registry.get_sample_value(
            "tidescaler_tls_certificate_expiry_timestamp_seconds"
        ) == expiry_of(new.server_cert)
    finally:
        running.stop(0)


def test_a_half_written_renewal_keeps_the_last_good_certificate(
    renewal: Renewal, caplog: pytest.LogCaptureFixture
) -> None:
    volume, old, new = renewal.volume, renewal.old, renewal.new
    registry = CollectorRegistry()
    running = serve(volume, mutual=False, registry=registry)
    try:
        assert answered(running.port, old.ca_cert)
        with caplog.at_level(logging.WARNING, logger="tidescaler.tls"):
            # The new certificate with the old key: a pair OpenSSL refuses.
            volume.publish(new.server_cert, old.server_key, new.ca_cert)
            time.sleep(CHECK_INTERVAL_SECONDS + 0.2)
            for _ in range(5):
                assert answered(running.port, old.ca_cert)
                time.sleep(CHECK_INTERVAL_SECONDS / 2)
        refused = [r for r in caplog.records if "cannot be served" in r.getMessage()]
        assert len(refused) == 1, [r.getMessage() for r in caplog.records]
        assert "is not the key of --tls-cert" in refused[0].getMessage()
        assert (
            registry.get_sample_value("tidescaler_tls_reloads_total", {"outcome": "refused"}) == 1
        )
        # The expiry exported stays the one of the certificate still served.
        assert registry.get_sample_value(
            "tidescaler_tls_certificate_expiry_timestamp_seconds"
        ) == expiry_of(old.server_cert)

        volume.publish(new.server_cert, new.server_key, new.ca_cert)  # the key follows
        eventually(lambda: answered(running.port, new.ca_cert))
    finally:
        running.stop(0)


def test_the_files_are_looked_at_most_once_a_second_and_read_only_when_changed(
    renewal: Renewal,
) -> None:
    volume, new = renewal.volume, renewal.new
    now = [0.0]
    files = TlsFiles(volume.cert, volume.key, clock=lambda: now[0])
    files.credentials()
    now[0] += CHECK_INTERVAL_SECONDS
    assert files.fetch() is None  # unchanged
    volume.publish(new.server_cert, new.server_key, new.ca_cert)
    assert files.fetch() is None  # changed, but looked at less than a second ago
    now[0] += CHECK_INTERVAL_SECONDS
    assert files.fetch() is not None
    now[0] += CHECK_INTERVAL_SECONDS
    assert files.fetch() is None
    # A reload asked for (SIGHUP) reads the files at once, changed or not.
    files.request_reload()
    assert files.fetch() is not None
    assert files.fetch() is None


def test_sighup_reloads_and_does_not_end_the_server(renewal: Renewal) -> None:
    """Without a handler SIGHUP killed the process at once, with no graceful drain."""
    volume, old = renewal.volume, renewal.old
    port = free_port()
    process = serve_process(port, f"--tls-cert={volume.cert}", f"--tls-key={volume.key}")
    try:
        eventually(lambda: answered(port, old.ca_cert), timeout_seconds=20)
        process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert process.poll() is None
        assert answered(port, old.ca_cert)  # a new connection: the forced read
    finally:
        log = stopped(process)
    assert "SIGHUP: TLS files will be read again" in log
    assert log.count("TLS files reloaded") == 1, log


def _write_atomically(source: bytes, target: Path) -> None:
    staging = target.with_suffix(".new")
    staging.write_bytes(source)
    os.replace(staging, target)


def test_a_renewal_that_cannot_be_read_for_a_moment_is_read_a_second_later(
    renewal: Renewal,
) -> None:
    """Out of file descriptors when the renewal is seen (a burst of connections): the
    set was remembered as refused and never read again, so the old certificate stayed
    until it expired."""
    plain = renewal.volume.root.parent / "plain"
    plain.mkdir()
    cert, key = plain / "tls.crt", plain / "tls.key"
    cert.write_bytes(renewal.old.server_cert.read_bytes())
    key.write_bytes(renewal.old.server_key.read_bytes())
    now = [0.0]
    outcomes: list[str] = []
    files = TlsFiles(cert, key, clock=lambda: now[0], on_load=lambda o, _: outcomes.append(o))
    files.credentials()
    _write_atomically(renewal.new.server_key.read_bytes(), key)
    _write_atomically(renewal.new.server_cert.read_bytes(), cert)
    now[0] += CHECK_INTERVAL_SECONDS
    held: list[int] = []
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        assert files.fetch() is None
    finally:
        for fd in held:
            os.close(fd)
    assert outcomes == ["loaded", "refused"]
    now[0] += CHECK_INTERVAL_SECONDS
    assert files.fetch() is not None  # the same files, readable again
    assert outcomes == ["loaded", "refused", "loaded"]
    assert files.expiry == expiry_of(renewal.new.server_cert)


def test_a_key_grpc_cannot_serve_is_refused_before_it_replaces_the_certificate(
    renewal: Renewal,
) -> None:
    """OpenSSL accepts an Ed448 pair; gRPC's BoringSSL does not, and kept the old
    certificate while the new one's expiry was exported."""
    volume = renewal.volume
    registry = CollectorRegistry()
    files = TlsFiles(volume.cert, volume.key, on_load=tls_metrics(registry))
    files.credentials()
    key = ed448.Ed448PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, None)
    )
    pem = serialization.Encoding.PEM
    folder = volume.root.parent / "ed448"
    folder.mkdir()
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    volume.publish(folder / "cert.pem", folder / "key.pem", renewal.old.ca_cert)
    files.request_reload()
    with pytest.raises(ValueError, match="a key of type Ed448, which gRPC does not serve"):
        check_pair(volume.cert, volume.key, None)
    assert files.fetch() is None
    assert registry.get_sample_value("tidescaler_tls_reloads_total", {"outcome": "refused"}) == 1
    assert registry.get_sample_value(
        "tidescaler_tls_certificate_expiry_timestamp_seconds"
    ) == expiry_of(renewal.old.server_cert)


@pytest.mark.parametrize(
    ("days", "said"),
    [
        (30.0, None),
        (2.0, "the TLS certificate served expires soon; renew it"),
        (-2.0, "the TLS certificate served has expired"),
    ],
)
def test_a_certificate_about_to_expire_or_expired_is_said_when_it_is_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, days: float, said: str | None
) -> None:
    """The expiry gauge tells a dashboard; the log tells whoever reads the start-up (an
    expired certificate was served without a word)."""
    pki = make_pki(tmp_path, server_days=days)
    files = TlsFiles(pki.server_cert, pki.server_key)
    with caplog.at_level(logging.WARNING, logger="tidescaler"):
        files.credentials()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if said is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(said), warnings
        assert files.expiry is not None and (files.expiry < time.time()) is (days < 0)
