"""Per-role TLS for the GCE and EC2 Dask clusters, delivered through a per-cluster secret.

The client process issues the cluster's certificates (`oxeo_flows.clusters.pki`: a fresh CA
whose key is discarded, one certificate and key each for the scheduler, the workers and the
client). With ``dask.tls.vm-certificates = "secret"`` (the default) it stores the scheduler's
and the workers' pair in two secrets of the cluster's cloud, before any VM is created:

- GCP: Secret Manager of the cluster's project (``gcp.endpoints.secret-manager``), secrets
  ``oxeo-dask-<cluster>-scheduler`` and ``oxeo-dask-<cluster>-worker``;
- AWS: Secrets Manager of the cluster's region (``aws.endpoint-url``), same names.

Each VM's container command is wrapped as ``python -m oxeo_flows.dask_vm ROLE MODULE ARGS``
(`oxeo_flows.dask_vm`): it reads its own role's secret with the VM's credentials (the service
account / instance role) and starts the Dask command with the material in memory. The VMs'
metadata and command lines carry the secret's *name* only. The client's key never leaves the
client process, except for a reusable cluster (``dask.reuse``), whose client pair is kept in a
third secret, ``oxeo-dask-<cluster>-client``, for later flow runs. Every secret is deleted
when the cluster closes, when its start fails, by `delete_cluster_secrets` and by
``oxeo-flows clusters stop``.

``dask.tls.vm-certificates = "metadata"`` is the opt-in for images without oxeo-flows: each
VM's role pair travels in its cloud-init (instance metadata / user-data, and the container's
environment), readable by anyone who may read the instance (``compute.instances.get``,
``ec2:DescribeInstanceAttribute``). The client's key is never shipped either way.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from oxeo_flows.errors import ClusterError, ConfigError, SecretAccessError

if TYPE_CHECKING:
    from distributed.security import Security

    from oxeo_flows.clusters.pki import ClusterCertificates, Role

__all__ = [
    "ENV_ENDPOINT",
    "ENV_SECRET",
    "AwsSecretStore",
    "JobSecretStore",
    "SecretStore",
    "VmTls",
    "delete_cluster_secrets",
    "issue_vm_tls",
    "open_store",
    "role_config",
    "secret_base",
    "start_vm_cluster",
]

logger = logging.getLogger("oxeo_flows.clusters")

#: The container env var naming where a VM's TLS secrets are: ``gcp:PROJECT/BASE`` or
#: ``aws:REGION/BASE``; the VM reads ``BASE-<role>``.
ENV_SECRET = "OXEO_DASK_TLS_SECRET"  # noqa: S105 - a variable name
#: The secret API's endpoint for the VM (a private endpoint, or an emulator), when not default.
ENV_ENDPOINT = "OXEO_DASK_TLS_ENDPOINT"
Delivery = Literal["secret", "metadata"]
_VM_ROLES: tuple[Role, ...] = ("scheduler", "worker")
_ALL_ROLES: tuple[Role, ...] = ("scheduler", "worker", "client")
WRAPPER_MODULE = "oxeo_flows.dask_vm"


class SecretStore(Protocol):
    """Create, read and delete one binary secret by id (`JobSecretStore`, `AwsSecretStore`)."""

    def create(self, secret_id: str, data: bytes, labels: dict[str, str] | None = None) -> None:
        """Create ``secret_id`` holding ``data``."""

    def read(self, secret_id: str) -> bytes | None:
        """The payload, or None when the secret does not exist."""

    def delete(self, secret_id: str) -> None:
        """Delete the secret (missing is fine)."""


def secret_base(cluster_name: str) -> str:
    """The prefix of a cluster's secret ids (valid for Secret Manager and Secrets Manager)."""
    return "oxeo-dask-" + re.sub(r"[^A-Za-z0-9_-]", "-", cluster_name)[:200]


class AwsSecretStore:
    """Secrets Manager in one region: the per-cluster secrets of an EC2 Dask cluster."""

    def __init__(self, region: str, endpoint_url: str | None = None) -> None:
        from oxeo_flows._extras import require
        from oxeo_flows._loopback import is_loopback_endpoint

        boto3 = require("boto3", "aws")
        self.region = region
        kwargs: dict[str, Any] = {"region_name": region}
        if endpoint_url and is_loopback_endpoint(endpoint_url):
            # An emulator (moto): like the anonymous loopback path of the Google clients.
            kwargs.update(aws_access_key_id="loopback", aws_secret_access_key="loopback")  # noqa: S106
        from oxeo_flows.aws import share_service_models

        session = boto3.session.Session(**kwargs)
        share_service_models(session._session)
        self.client = session.client("secretsmanager", endpoint_url=endpoint_url or None)

    def create(self, secret_id: str, data: bytes, labels: dict[str, str] | None = None) -> None:
        """Create ``secret_id`` holding ``data``, tagged with ``labels``."""
        tags = [{"Key": "oxeo-flows", "Value": "dask-cluster"}]
        tags += [{"Key": k, "Value": v} for k, v in (labels or {}).items()]
        try:
            self.client.create_secret(Name=secret_id, SecretBinary=data, Tags=tags)
        except Exception as exc:
            msg = (
                f"could not create the Dask TLS secret {secret_id!r} in Secrets Manager "
                f"({self.region}): {type(exc).__name__}: {exc}. The client needs "
                "secretsmanager:CreateSecret, TagResource and DeleteSecret on oxeo-dask-*"
            )
            raise SecretAccessError(msg) from exc

    def read(self, secret_id: str) -> bytes | None:
        """The secret's payload, or None while it does not exist."""
        try:
            response = self.client.get_secret_value(SecretId=secret_id)
        except Exception as exc:
            if _aws_code(exc) == "ResourceNotFoundException":
                return None
            msg = f"could not read {secret_id!r}: {type(exc).__name__}: {exc}"
            raise SecretAccessError(msg) from exc
        return bytes(response["SecretBinary"])

    def delete(self, secret_id: str) -> None:
        """Delete the secret at once, without a recovery window (missing is fine)."""
        try:
            self.client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
        except Exception as exc:
            if _aws_code(exc) != "ResourceNotFoundException":
                raise


_SECRET_LABEL = {"oxeo-flows": "dask-vertex"}


class JobSecretStore:
    """The per-job secret in Secret Manager: created by the flow, read by workers, deleted."""

    def __init__(self, project: str, endpoint: str | None = None) -> None:
        from oxeo_flows.secrets.gcp import secret_manager_client

        self.project = project
        self.client = secret_manager_client(endpoint)

    def _name(self, secret_id: str) -> str:
        return f"projects/{self.project}/secrets/{secret_id}"

    def create(self, secret_id: str, data: bytes, labels: dict[str, str] | None = None) -> None:
        """Create the secret with one version holding ``data`` (and ``labels``)."""
        try:
            self.client.create_secret(
                parent=f"projects/{self.project}",
                secret_id=secret_id,
                secret={
                    "replication": {"automatic": {}},
                    "labels": {**_SECRET_LABEL, **(labels or {})},
                },
            )
            self.client.add_secret_version(parent=self._name(secret_id), payload={"data": data})
        except Exception as exc:
            msg = (
                f"could not create the per-job Dask TLS secret {self._name(secret_id)!r}: "
                f"{type(exc).__name__}: {exc}. The job's service account needs "
                "roles/secretmanager.admin (or secretVersionAdder and a secret it may create)"
            )
            raise SecretAccessError(msg) from exc

    def read(self, secret_id: str) -> bytes | None:
        """The secret's latest payload, or None while it does not exist."""
        try:
            response = self.client.access_secret_version(
                name=f"{self._name(secret_id)}/versions/latest"
            )
        except Exception as exc:
            if type(exc).__name__ == "NotFound":
                return None
            msg = f"could not read {self._name(secret_id)!r}: {type(exc).__name__}: {exc}"
            raise SecretAccessError(msg) from exc
        return bytes(response.payload.data)

    def delete(self, secret_id: str) -> None:
        """Delete the secret (missing is fine)."""
        try:
            self.client.delete_secret(name=self._name(secret_id))
        except Exception as exc:
            if type(exc).__name__ != "NotFound":
                raise


def _aws_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


def open_store(location: str, endpoint: str | None = None) -> SecretStore:
    """The store of ``location`` (``gcp:PROJECT`` or ``aws:REGION``).

    Raises:
        ConfigError: Another form.
    """
    cloud, _, where = location.partition(":")
    if cloud == "gcp" and where:
        return JobSecretStore(where, endpoint)
    if cloud == "aws" and where:
        return AwsSecretStore(where, endpoint)
    msg = f"{location!r} is not a Dask TLS secret location (expected gcp:PROJECT or aws:REGION)"
    raise ConfigError(msg)


def role_config(certs: ClusterCertificates, role: Role) -> dict[str, Any]:
    """The dask config that gives a process ``role``'s TLS material (in memory)."""
    return {
        "distributed.comm.default-scheme": "tls",
        "distributed.comm.require-encryption": True,
        "distributed.comm.tls.ca-file": certs.ca,
        f"distributed.comm.tls.{role}.cert": certs.certs[role],
        f"distributed.comm.tls.{role}.key": certs.keys[role],
    }


@dataclass
class VmTls:
    """A VM cluster's per-role certificates and how its VMs get theirs.

    Attributes:
        certs: The cluster's certificates (the CA key is not among them).
        delivery: ``secret`` (the VMs read a per-cluster secret) or ``metadata``.
        location: ``gcp:PROJECT`` or ``aws:REGION``.
        base: Secret id prefix (`secret_base`).
        endpoint: Secret API endpoint, for the client and the VMs (None: the cloud's default).
        labels: Labels/tags of the secrets (cluster, stack).
    """

    certs: ClusterCertificates = field(repr=False)
    delivery: Delivery
    location: str
    base: str
    endpoint: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    client_secret: bool = False
    _store: SecretStore | None = field(default=None, repr=False)
    _published: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def issue(
        cls,
        cluster_name: str,
        *,
        delivery: Delivery,
        location: str,
        endpoint: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> VmTls:
        """Issue the certificates of cluster ``cluster_name`` (nothing is stored yet)."""
        from oxeo_flows.clusters.pki import issue_certificates

        if delivery not in ("secret", "metadata"):
            msg = (
                f"dask.tls.vm-certificates is {delivery!r}; use 'secret' (default: the VMs read "
                "their certificate from a per-cluster secret) or 'metadata'"
            )
            raise ConfigError(msg)
        return cls(
            certs=issue_certificates(cluster_name),
            delivery=delivery,
            location=location,
            base=secret_base(cluster_name),
            endpoint=endpoint,
            labels=dict(labels or {}),
        )

    @property
    def store(self) -> SecretStore:
        """The secret store (opened on first use)."""
        if self._store is None:
            self._store = open_store(self.location, self.endpoint)
        return self._store

    def secret_id(self, role: Role) -> str:
        """The id of ``role``'s secret."""
        return f"{self.base}-{role}"

    def shared_config(self) -> dict[str, Any]:
        """What every VM inherits in its cloud-init: TLS on and the (public) CA certificate."""
        return {
            "distributed.comm.default-scheme": "tls",
            "distributed.comm.require-encryption": True,
            "distributed.comm.tls.ca-file": self.certs.ca,
        }

    def client_security(self) -> Security:
        """The client's `Security` (its key stays in this process)."""
        return self.certs.security_for("client", require_encryption=False)

    def publish(self) -> None:
        """Create the scheduler's and the workers' secrets (and the client's, for reuse), once.

        Called before the first VM is created (not when the cluster object is built, so an
        unstarted ``asynchronous=True`` cluster stores nothing).

        Raises:
            SecretAccessError: A secret could not be created; those created are deleted.
        """
        with self._lock:
            if self._published:
                return
            roles: list[Role] = list(_VM_ROLES) if self.delivery == "secret" else []
            if self.client_secret:
                roles.append("client")
            try:
                self._create(roles)
            except BaseException:
                self.delete()
                raise
            self._published = True

    def _create(self, roles: list[Role]) -> None:
        """Create the roles' secrets at once (one API round trip instead of one per role)."""
        if not roles:
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(roles), thread_name_prefix="oxeo-tls") as pool:
            futures = [
                pool.submit(
                    self.store.create, self.secret_id(role), self.certs.bundle(role), self.labels
                )
                for role in roles
            ]
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error

    def delete(self) -> list[str]:
        """Delete every secret of the cluster (missing ones are fine); returns the ids tried."""
        return _delete_all(self.store, self.base)

    def vm_env(self, set_env: str, role: Role, inherited: str) -> str:
        """The ``env K="V" ...`` prefix of ``role``'s container command.

        Args:
            set_env: The prefix as the cluster renders it (``env DASK_INTERNAL_INHERIT_CONFIG=``).
            role: ``scheduler`` or ``worker``.
            inherited: The serialized config the prefix carries.
        """
        if self.delivery == "metadata":
            import dask.config

            config = dask.config.deserialize(inherited)
            dask.config.set(role_config(self.certs, role), config=config)
            return f'env DASK_INTERNAL_INHERIT_CONFIG="{dask.config.serialize(config)}"'
        extra = f' {ENV_SECRET}="{self.location}/{self.base}"'
        if self.endpoint:
            extra += f' {ENV_ENDPOINT}="{self.endpoint}"'
        return set_env + extra

    def wrap(self, command: str, set_env: str, role: Role) -> str:
        """``role``'s container command, run through `oxeo_flows.dask_vm` (secret delivery).

        Raises:
            ClusterError: The command does not have the expected form (nothing would fetch
                the certificates: refuse rather than start VMs without TLS).
        """
        if self.delivery == "metadata":
            return command
        head = f"{set_env} python -m "
        if not command.startswith(head):
            msg = (
                f"cannot wrap the Dask {role} command for per-cluster TLS secrets: it does not "
                f"start with 'env ... python -m' ({command[:60]!r}...)"
            )
            raise ClusterError(msg)
        return f"{head}{WRAPPER_MODULE} {role} {command[len(head) :]}"


def _delete_all(store: SecretStore, base: str) -> list[str]:
    ids = [f"{base}-{role}" for role in _ALL_ROLES]
    errors: list[str] = []
    for secret_id in ids:
        try:
            store.delete(secret_id)
        except Exception as exc:
            errors.append(f"{secret_id}: {type(exc).__name__}: {exc}")
    if errors:
        msg = "could not delete Dask TLS secrets: " + "; ".join(errors)
        raise SecretAccessError(msg)
    return ids


def delete_cluster_secrets(
    cluster_name: str,
    *,
    project: str | None = None,
    region: str | None = None,
    endpoint: str | None = None,
) -> list[str]:
    """Delete the TLS secrets of cluster ``cluster_name`` (for ``clusters cleanup``/``stop``).

    Give ``project`` for a GCE cluster (Secret Manager) or ``region`` for an EC2 cluster
    (Secrets Manager). Missing secrets are fine.

    Args:
        cluster_name: The cluster's name (its ``oxeo-flows-cluster`` label / tag).
        project: GCP project of the cluster.
        region: AWS region of the cluster.
        endpoint: ``gcp.endpoints.secret-manager`` / ``aws.endpoint-url``.

    Returns:
        The secret ids deleted (or already absent).

    Raises:
        ConfigError: Neither or both of ``project`` and ``region``.
        SecretAccessError: A secret could not be deleted.
    """
    if (project is None) == (region is None):
        msg = "delete_cluster_secrets needs project (GCE) or region (EC2), not both"
        raise ConfigError(msg)
    location = f"gcp:{project}" if project else f"aws:{region}"
    return _delete_all(open_store(location, endpoint), secret_base(cluster_name))


def issue_vm_tls(
    enabled: bool,
    cluster_name: str,
    *,
    delivery: Delivery,
    location: str,
    endpoint: str | None = None,
    labels: dict[str, str] | None = None,
    client_secret: bool = False,
) -> VmTls | None:
    """Issue a cluster's certificates (None when TLS is off); `VmTls.publish` stores them.

    Args:
        enabled: TLS on (``dask.tls.enabled``).
        cluster_name: The cluster's name.
        delivery: ``secret`` or ``metadata`` (``dask.tls.vm-certificates``).
        location: ``gcp:PROJECT`` or ``aws:REGION``.
        endpoint: The secret API endpoint.
        labels: Labels/tags of the secrets.
        client_secret: Keep the client pair in a secret too (a reusable cluster).

    Raises:
        ConfigError: Unknown delivery.
    """
    if not enabled:
        return None
    tls = VmTls.issue(
        cluster_name, delivery=delivery, location=location, endpoint=endpoint, labels=labels
    )
    tls.client_secret = client_secret
    return tls


def start_vm_cluster(cls: type[Any], plan: Any, options: dict[str, Any]) -> Any:
    """``cls(plan=plan, **options)``; a start that fails deletes the cluster's secrets."""
    try:
        return cls(plan=plan, **options)
    except BaseException:
        tls = getattr(plan, "vm_tls", None)
        if tls is not None:
            try:
                tls.delete()
            except Exception as exc:
                logger.warning("Could not delete the TLS secrets of %s: %s", plan.name, exc)
        raise
