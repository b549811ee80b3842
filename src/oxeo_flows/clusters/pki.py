"""Per-cluster, per-role TLS certificates for Dask, signed by a CA whose key is never kept.

`issue_certificates` makes a fresh CA, signs one certificate each for the scheduler, the workers
and the client, and drops the CA's private key: nobody can sign another certificate for the
cluster afterwards. Each role gets only its own key (`ClusterCertificates.security_for`), and
`worker_bundle` is what a worker needs (the CA certificate and the worker's own pair), for a
secret store; the client's and the scheduler's keys stay in the memory of the process that
issued them.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from oxeo_flows._extras import require
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

__all__ = [
    "ClusterCertificates",
    "Role",
    "issue_certificates",
    "parse_bundle",
    "security_from_bundle",
]

Role = Literal["client", "scheduler", "worker"]
_ROLES: tuple[Role, ...] = ("client", "scheduler", "worker")
_FIELDS = (
    "tls_ca_file",
    "tls_client_cert",
    "tls_client_key",
    "tls_scheduler_cert",
    "tls_scheduler_key",
    "tls_worker_cert",
    "tls_worker_key",
)


@dataclass(frozen=True)
class ClusterCertificates:
    """A cluster's CA certificate and one certificate and key per role (PEM, in memory)."""

    ca: str
    certs: dict[str, str] = field(repr=False)
    keys: dict[str, str] = field(repr=False)

    def security_for(self, *roles: Role, require_encryption: bool = True) -> Security:
        """A `distributed.Security` holding only ``roles``' keys.

        Args:
            *roles: The roles whose certificate and key it holds.
            require_encryption: Refuse plain ``tcp://`` (dask-cloudprovider copies the TLS
                material of a ``require_encryption`` object into the process-wide config, so
                its clusters get False here; their addresses are ``tls://`` all the same).
        """
        distributed = require("distributed", "dask")
        kwargs: dict[str, str | None] = dict.fromkeys(_FIELDS)
        kwargs["tls_ca_file"] = self.ca
        for role in roles:
            kwargs[f"tls_{role}_cert"] = self.certs[role]
            kwargs[f"tls_{role}_key"] = self.keys[role]
        security: Security = distributed.Security(require_encryption=require_encryption, **kwargs)
        return security

    def bundle(self, role: Role) -> bytes:
        """What ``role`` needs, as JSON bytes: the CA certificate and the role's own pair."""
        data = {"ca": self.ca, "cert": self.certs[role], "key": self.keys[role]}
        return json.dumps(data).encode()

    def worker_bundle(self) -> bytes:
        """What a worker needs, as JSON bytes: the CA certificate and the worker's own pair."""
        return self.bundle("worker")


def parse_bundle(bundle: bytes, role: Role = "worker") -> ClusterCertificates:
    """The certificates of one ``role`` from a `ClusterCertificates.bundle`.

    Raises:
        ConfigError: The bundle is not one (the message never shows its content).
    """
    try:
        data = json.loads(bundle)
        ca, cert, key = data["ca"], data["cert"], data["key"]
        if not all(isinstance(v, str) for v in (ca, cert, key)):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        msg = "the Dask TLS bundle is not valid (expected JSON with ca, cert and key)"
        raise ConfigError(msg) from None
    return ClusterCertificates(ca=ca, certs={role: cert}, keys={role: key})


def security_from_bundle(bundle: bytes, role: Role = "worker") -> Security:
    """A `distributed.Security` for ``role`` from a `ClusterCertificates.bundle`.

    Raises:
        ConfigError: The bundle is not one (the message never shows its content).
    """
    certs = parse_bundle(bundle, role)
    from oxeo_flows.secrets._core import protect_value

    protect_value(certs.keys[role])
    return certs.security_for(role)


def issue_certificates(name: str, *, days: int = 7) -> ClusterCertificates:
    """Issue a CA and the client, scheduler and worker certificates of cluster ``name``.

    Args:
        name: The cluster's name (in each certificate's subject).
        days: Validity of the certificates.

    Returns:
        The certificates; the CA's private key is not part of them and is discarded.
    """
    require("cryptography", "dask")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(tz=datetime.UTC)
    until = now + datetime.timedelta(days=days)

    def subject(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject(f"{name} CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    certs: dict[str, str] = {}
    keys: dict[str, str] = {}
    for role in _ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject(f"{name} {role}"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]), False)
            .sign(ca_key, hashes.SHA256())
        )
        certs[role] = cert.public_bytes(serialization.Encoding.PEM).decode()
        keys[role] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    del ca_key  # never stored: no further certificate can be signed for this cluster
    from oxeo_flows.secrets._core import protect_value

    for pem in keys.values():
        protect_value(pem)  # masked in every log and run state of this process
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    return ClusterCertificates(ca=ca_pem, certs=certs, keys=keys)
