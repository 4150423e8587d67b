"""TLS material and site keys for a deployment, made with ``cryptography``.

A run's own CA signs the server certificate (SANs: loopback and the hosts given);
each site gets an EC P-384 key pair in OpenSSH format, as Flower's SuperNode
authentication expects. Private keys are written 0600 and never logged.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALID_DAYS = 365


@dataclass(frozen=True)
class ServerTls:
    """What SuperLink serves with, and what every client verifies against."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class SiteKey:
    private: Path
    public: Path


def _write(path: Path, data: bytes, private: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # also when the file existed with another mode
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medfl"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["127.0.0.1", "localhost", *hosts]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey):  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
    )


def make_server_tls(folder: Path, hosts: list[str] | None = None) -> ServerTls:
    """A CA, and a server certificate it signs for loopback plus ``hosts``."""
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = _name("medfl federation CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        _builder(_name("medfl server"), ca_name, key.public_key())
        .add_extension(_san(hosts or []), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    _write(folder / "ca.key", _pem_key(ca_key), private=True)
    return ServerTls(
        ca=_write(folder / "ca.pem", ca_cert.public_bytes(pem), private=False),
        cert=_write(folder / "server.pem", cert.public_bytes(pem), private=False),
        key=_write(folder / "server.key", _pem_key(key), private=True),
    )


def make_site_key(folder: Path, site: str) -> SiteKey:
    """An EC P-384 key pair for ``site`` (OpenSSH format): ``SITE.key`` / ``SITE.pub``."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return SiteKey(
        private=_write(folder / f"{site}.key", private, private=True),
        public=_write(folder / f"{site}.pub", public + f" {site}\n".encode(), private=False),
    )


def check_server_tls(tls: ServerTls) -> None:
    """Before anything starts: the files exist, server.pem is signed by ca.pem, is
    valid now, and server.key is its key. Names the file at fault."""
    from medfl.errors import UsageError

    try:
        ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
        cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
        key = serialization.load_pem_private_key(tls.key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise UsageError(f"TLS material cannot be read: {exc}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise UsageError(
            f"{tls.cert} is not signed by {tls.ca}: sites would refuse the server "
            "(use the CA that signed the server certificate)"
        ) from None
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UsageError(
            f"{tls.cert} is not valid now (valid until {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    if key.public_key() != cert.public_key():
        raise UsageError(f"{tls.key} is not the key of {tls.cert}")
