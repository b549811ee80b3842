"""The ``gcp`` backend: an ephemeral Dask cluster on private GCE VMs (dask-cloudprovider).

`gcp_cluster` is the cluster factory that `dask_runner` hands to Prefect's ``DaskTaskRunner``
(it is module-level, so Prefect pickles it by reference). Private by default: no external IP on
any VM (``cloudprovider.gcp.public_ingress`` false in a private copy of the config), the client
dials the scheduler's internal IP, TLS with per-cluster certificates, and a start deadline after
which every VM is deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.clusters._vm import (
    LABEL_CLUSTER,
    ClusterPlan,
    InheritEnvMixin,
    Probe,
    SchedulerWaitMixin,
    VMClusterMixin,
    cluster_labels,
    current_flow_run_id,
    new_cluster_name,
)

if TYPE_CHECKING:
    from dask_cloudprovider.gcp import GCPCluster

__all__ = ["gcp_cluster", "gcp_cluster_class"]

_CLASSES: dict[str, type[Any]] = {}


def gcp_cluster_class() -> type[Any]:
    """Our ``GCPCluster`` subclass (built on first use, so importing this module is cheap)."""
    if "cluster" in _CLASSES:
        return _CLASSES["cluster"]
    instances = require("dask_cloudprovider.gcp.instances", "dask")

    class OxeoGCPScheduler(InheritEnvMixin, SchedulerWaitMixin, instances.GCPScheduler):  # type: ignore[misc,name-defined]
        """A scheduler VM with a bounded, non-blocking wait."""

    class OxeoGCPWorker(InheritEnvMixin, instances.GCPWorker):  # type: ignore[misc,name-defined]
        """A worker VM inheriting the cluster's private config."""

    class OxeoGCPCluster(VMClusterMixin, instances.GCPCluster):  # type: ignore[misc,name-defined]
        """``GCPCluster`` with a start deadline, cleanup by label and no global config changes."""

        # GCPCluster assigns its own classes in __init__; keep ours.
        @property
        def scheduler_class(self) -> type[Any]:
            return OxeoGCPScheduler

        @scheduler_class.setter
        def scheduler_class(self, value: Any) -> None:
            pass

        @property
        def worker_class(self) -> type[Any]:
            return OxeoGCPWorker

        @worker_class.setter
        def worker_class(self, value: Any) -> None:
            pass

        async def _oxeo_sweep(self) -> list[str]:
            plan = self._plan
            project = self.options["projectid"]

            def sweep() -> list[str]:
                listing = (
                    self.compute.instances()
                    .list(
                        project=project,
                        zone=plan.zone,
                        filter=f"labels.{LABEL_CLUSTER} = {plan.name}",
                    )
                    .execute()
                )
                names = [item["name"] for item in listing.get("items", [])]
                for name in names:
                    self.compute.instances().delete(
                        project=project, zone=plan.zone, instance=name
                    ).execute()
                return names

            names: list[str] = await self.call_async(sweep)
            return names

    for cls in (OxeoGCPScheduler, OxeoGCPWorker, OxeoGCPCluster):
        cls.__module__ = __name__
    _CLASSES["cluster"] = OxeoGCPCluster
    return OxeoGCPCluster


def gcp_cluster(
    *,
    project: str,
    zone: str,
    subnetwork: str,
    network_project: str | None = None,
    network: str | None = None,
    scheduler_machine_type: str = "e2-standard-2",
    worker_machine_type: str = "e2-standard-4",
    n_workers: int = 0,
    preemptible: bool = False,
    ngpus: int = 0,
    gpu_type: str | None = None,
    scheduler_ngpus: int = 0,
    docker_image: str | None = None,
    source_image: str | None = None,
    disk_size_gb: int = 50,
    disk_type: str = "pd-standard",
    service_account: str | None = None,
    public_ip: bool = False,
    bootstrap: bool = True,
    auto_shutdown: bool = True,
    labels: dict[str, str] | None = None,
    tls: bool = True,
    start_timeout: float = 600.0,
    cluster_name: str | None = None,
    flow_run_id: str | None = None,
    stack_name: str | None = None,
    probe: Probe | None = None,
    asynchronous: bool = False,
    **kwargs: Any,
) -> GCPCluster:
    """Start a private Dask cluster on GCE VMs, within ``start_timeout`` seconds.

    Args:
        project: Project id where the VMs run.
        zone: Zone of the VMs, e.g. ``europe-west4-a``.
        subnetwork: Subnetwork *name* in the zone's region (dask-cloudprovider's ``network``).
        network_project: Shared VPC host project that owns the subnetwork (default ``project``).
        network: VPC network name, for messages only.
        scheduler_machine_type: Machine type of the scheduler VM.
        worker_machine_type: Machine type of the worker VMs.
        n_workers: Workers to start with.
        preemptible: Preemptible (spot) worker VMs.
        ngpus: GPUs per worker VM (needs ``gpu_type``).
        gpu_type: Accelerator type, e.g. ``nvidia-tesla-t4``.
        scheduler_ngpus: GPUs on the scheduler VM.
        docker_image: Image the VMs run (needs dask/distributed matching the client).
        source_image: Prebuilt VM image (e.g. a Packer image); ``bootstrap=False`` if it has
            Docker already.
        disk_size_gb: Boot disk size.
        disk_type: Boot disk type.
        service_account: Service account of the VMs.
        public_ip: Give the VMs external IPs (not recommended; the firewall must then allow
            8786-8787 from the client's public address).
        bootstrap: Install Docker (and GPU drivers) at boot.
        auto_shutdown: VMs shut themselves down when Dask exits.
        labels: Extra GCE labels.
        tls: Encrypt with per-cluster temporary certificates.
        start_timeout: Deadline for VM creation + scheduler reachable + first workers.
        cluster_name: Name used in labels (default: a fresh ``oxeo-XXXXXXXX``).
        flow_run_id: Flow run id for the labels (default: the current flow run).
        stack_name: Stack name for the labels.
        probe: Async ``(host, port) -> bool`` reachability check (default: a TCP connect).
        asynchronous: Create without starting (for use inside an event loop).
        **kwargs: Passed to ``dask_cloudprovider.gcp.GCPCluster``.

    Returns:
        The running cluster.

    Raises:
        ClusterStartTimeout: Not reachable in time; every VM has been deleted.
    """
    name = cluster_name or new_cluster_name()
    all_labels = {
        **(labels or {}),
        **cluster_labels(name, flow_run_id or current_flow_run_id(), stack_name),
    }
    remote: dict[str, Any] = {}
    security: Any = False
    if tls:
        from oxeo_flows.clusters.tls import temporary_security

        security, remote = temporary_security()
    host_project = network_project or project
    plan = ClusterPlan(
        name=name,
        cloud="gcp",
        start_timeout=start_timeout,
        labels=all_labels,
        network=(
            f"{network or '?'} / subnetwork projects/{host_project}/regions/"
            f"{zone.rsplit('-', 1)[0]}/subnetworks/{subnetwork}"
        ),
        zone=zone,
        region=zone.rsplit("-", 1)[0],
        config_overrides={
            "public_ingress": bool(public_ip),
            "instance_labels": dict(all_labels),
        },
        remote_config=remote,
        probe=probe,
    )
    options: dict[str, Any] = {
        "projectid": project,
        "zone": zone,
        "network": subnetwork,
        "network_projectid": host_project,
        "scheduler_machine_type": scheduler_machine_type,
        "worker_machine_type": worker_machine_type,
        # Explicit GPU counts avoid dask-cloudprovider's str/int default bug.
        "scheduler_ngpus": scheduler_ngpus,
        "scheduler_gpu_type": gpu_type if scheduler_ngpus else None,
        "worker_ngpus": ngpus,
        "worker_gpu_type": gpu_type if ngpus else None,
        "filesystem_size": disk_size_gb,
        "disk_type": disk_type,
        "preemptible": preemptible,
        "bootstrap": bootstrap,
        "auto_shutdown": auto_shutdown,
        "instance_labels": dict(all_labels),
        "n_workers": n_workers,
        "security": security,
        "asynchronous": asynchronous,
    }
    if tls:
        options["protocol"] = "tls"
    if docker_image:
        options["docker_image"] = docker_image
    if source_image:
        options["source_image"] = source_image
    if service_account:
        options["service_account"] = service_account
    options.update(kwargs)
    cluster: GCPCluster = gcp_cluster_class()(plan=plan, **options)
    return cluster
