"""Named GCE/EC2 Dask clusters that outlive their flow run (``dask.reuse``, ``dask.cluster-name``).

With ``reuse = true`` the runner looks for a running scheduler VM labelled (GCE) / tagged
(EC2) with the cluster name and the stack, and for the cluster's client TLS pair in its secret
(``oxeo-dask-<name>-client``, `oxeo_flows.clusters.vm_secrets`); when both are there it
connects to it (a connect, no VM created). Otherwise it starts the cluster as usual, with the
client pair kept in that secret, and *detaches* from it: when the flow run ends the VMs keep
running. The cluster ends by the scheduler's idle timeout (``dask.idle-timeout``) or with
``oxeo-flows clusters stop NAME`` (`stop_cluster`: every VM and secret of the name). The client
pair is read into memory only, never written to disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oxeo_flows.clusters._vm import LABEL_CLUSTER, LABEL_STACK
from oxeo_flows.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

    from oxeo_flows.stack import Stack

__all__ = ["ReusableCluster", "detach", "find_reusable", "stop_cluster"]

logger = logging.getLogger("oxeo_flows.clusters")

_EC2_LIVE = ["pending", "running"]


@dataclass(frozen=True)
class ReusableCluster:
    """A running named cluster found by its labels / tags."""

    name: str
    address: str
    security: Security


def _location(backend: str, kwargs: dict[str, Any]) -> tuple[str, str | None]:
    if backend == "gcp":
        return f"gcp:{kwargs['project']}", kwargs.get("secret_manager_endpoint")
    return f"aws:{kwargs['region']}", kwargs.get("endpoint_url")


def _gce_scheduler(kwargs: dict[str, Any], name: str) -> str | None:
    from oxeo_flows.clusters.gcp import compute_client

    compute = compute_client(kwargs.get("compute_endpoint"))
    expression = f"labels.{LABEL_CLUSTER} = {name}"
    if kwargs.get("stack_name"):
        expression += f" AND labels.{LABEL_STACK} = {str(kwargs['stack_name']).lower()[:63]}"
    try:
        listing = (
            compute.instances()
            .list(project=kwargs["project"], zone=kwargs["zone"], filter=expression)
            .execute()
        )
    except Exception as exc:
        msg = f"cannot look for the Dask cluster {name!r} on GCE: {type(exc).__name__}: {exc}"
        raise ClusterError(msg) from exc
    for item in listing.get("items", []) or []:
        if item.get("name", "").endswith("-scheduler") and item.get("status") == "RUNNING":
            ip = item["networkInterfaces"][0]["networkIP"]
            return f"tls://{ip}:8786"
    return None


def _ec2_client(kwargs: dict[str, Any]) -> Any:
    import boto3

    return boto3.session.Session(region_name=kwargs["region"]).client(
        "ec2", endpoint_url=kwargs.get("endpoint_url") or None
    )


def _ec2_scheduler(kwargs: dict[str, Any], name: str) -> str | None:
    from oxeo_flows.clusters.ec2 import TAG_CLUSTER, TAG_STACK

    filters = [
        {"Name": f"tag:{TAG_CLUSTER}", "Values": [name]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    if kwargs.get("stack_name"):
        filters.append({"Name": f"tag:{TAG_STACK}", "Values": [str(kwargs["stack_name"])]})
    try:
        pages = _ec2_client(kwargs).describe_instances(Filters=filters)
    except Exception as exc:
        msg = f"cannot look for the Dask cluster {name!r} on EC2: {type(exc).__name__}: {exc}"
        raise ClusterError(msg) from exc
    for reservation in pages.get("Reservations", []):
        for inst in reservation.get("Instances", []):
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            if tags.get("Name", "").endswith("-scheduler") and inst.get("PrivateIpAddress"):
                return f"tls://{inst['PrivateIpAddress']}:8786"
    return None


def find_reusable(backend: str, kwargs: dict[str, Any]) -> ReusableCluster | None:
    """The running cluster named ``kwargs['cluster_name']``, if its scheduler and secret exist.

    Args:
        backend: ``gcp`` or ``ec2``.
        kwargs: The cluster factory's keywords (project/zone/endpoints, or region/endpoint).

    Returns:
        Its address and client `Security` (in memory), or None.

    Raises:
        ClusterError: The cloud API could not be asked.
        SecretAccessError: The client secret exists but cannot be read.
    """
    from oxeo_flows.clusters.pki import parse_bundle
    from oxeo_flows.clusters.vm_secrets import open_store, secret_base

    name = str(kwargs["cluster_name"])
    find = _gce_scheduler if backend == "gcp" else _ec2_scheduler
    address = find(kwargs, name)
    if address is None:
        return None
    location, endpoint = _location(backend, kwargs)
    bundle = open_store(location, endpoint).read(f"{secret_base(name)}-client")
    if bundle is None:
        logger.warning(
            "Dask cluster %r has a running scheduler at %s but no client secret; starting anew",
            name,
            address,
        )
        return None
    from oxeo_flows.secrets._core import protect_value

    certs = parse_bundle(bundle, "client")
    protect_value(certs.keys["client"])
    security = certs.security_for("client", require_encryption=False)
    return ReusableCluster(name=name, address=address, security=security)


def detach(cluster: Any) -> tuple[str, Security]:
    """Let go of a started VM cluster without stopping it: its VMs and secrets stay.

    Returns:
        The scheduler's address and the client `Security`, to connect as to an address.
    """
    address = str(cluster.scheduler_address)
    security = cluster.security
    # SpecCluster's close scales to 0 and closes the scheduler; with nothing to close and
    # shutdown_scheduler off it only drops its connection and its event loop.
    cluster.shutdown_scheduler = False
    cluster.shutdown_on_close = False
    cluster.workers = {}
    cluster.worker_spec = {}
    cluster._created.clear()
    cluster.scheduler = None
    cluster.close()
    return address, security


def stop_cluster(name: str, *, stack: Stack | str | None = None) -> dict[str, list[str]]:
    """Delete every VM and the TLS secrets of the named cluster (``clusters stop NAME``).

    Args:
        name: The cluster's name (``dask.cluster-name``).
        stack: The stack whose clouds to look in (default: the active stack).

    Returns:
        ``{"vms": [...ids], "secrets": [...ids]}``.

    Raises:
        ConfigError: The stack has neither gcp.project nor aws.region.
        ClusterError: A VM could not be deleted.
        SecretAccessError: A secret could not be deleted.
    """
    from oxeo_flows.clusters.cleanup import (
        delete_cluster_secrets_in,
        delete_cluster_vms,
        list_cluster_vms,
    )
    from oxeo_flows.stack import resolve_stack

    resolved = resolve_stack(stack)
    backend = str(resolved.dask.backend)
    clouds: list[str] | None = [backend] if backend in ("gcp", "ec2") else None
    if clouds is None:
        clouds = [
            c for c, on in (("gcp", resolved.gcp.project), ("ec2", resolved.aws.region)) if on
        ]
    if not clouds:
        msg = (
            f"stack {resolved.name!r} has neither gcp.project nor aws.region, so there is "
            "nowhere to look for the cluster; choose a stack with --stack"
        )
        raise ConfigError(msg)
    vms = list_cluster_vms(resolved, clouds=clouds, cluster=name)
    if vms:
        delete_cluster_vms(vms, stack=resolved)
    secrets: list[str] = []
    for cloud in clouds:
        secrets += delete_cluster_secrets_in(resolved, cloud, name)
    return {"vms": [vm.id for vm in vms], "secrets": secrets}
