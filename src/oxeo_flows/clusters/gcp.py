"""The ``gcp`` backend: an ephemeral Dask cluster on private GCE VMs (dask-cloudprovider).

`gcp_cluster` is the cluster factory that `dask_runner` hands to Prefect's ``DaskTaskRunner``
(it is module-level, so Prefect pickles it by reference). Private by default: no external IP on
any VM (``cloudprovider.gcp.public_ingress`` false in a private copy of the config), the client
dials the scheduler's internal IP, TLS with per-cluster certificates, and a start deadline after
which every VM is deleted.

The Compute Engine client is ours (`compute_client`), not dask-cloudprovider's: it honours
``gcp.endpoints.compute`` (a private endpoint, or an emulator), and a loopback endpoint is
dialed in plaintext with anonymous credentials, without any application-default-credentials
lookup. A scheduler VM that stops before it answers (its container exited) fails the start at
once, with the VM's serial console in the message, instead of waiting for the deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.clusters._deadline import Deadline
from oxeo_flows.clusters._vm import (
    LABEL_CLUSTER,
    LABEL_STACK,
    ClusterPlan,
    InheritEnvMixin,
    Pinned,
    Probe,
    SchedulerWaitMixin,
    VMClusterMixin,
    cluster_labels,
    current_flow_run_id,
    new_cluster_name,
)
from oxeo_flows.clusters.vm_secrets import Delivery, issue_vm_tls, start_vm_cluster
from oxeo_flows.errors import ClusterError

if TYPE_CHECKING:
    from dask_cloudprovider.gcp import GCPCluster

__all__ = ["compute_client", "compute_endpoint_url", "gcp_cluster", "gcp_cluster_class"]

_CLASSES: dict[str, type[Any]] = {}
#: Seconds one Compute API request of a cluster may take.
_REQUEST_TIMEOUT = 60.0
_DEAD = frozenset({"STOPPING", "STOPPED", "SUSPENDING", "SUSPENDED", "TERMINATED"})


def compute_endpoint_url(endpoint: str) -> str:
    """The discovery ``api_endpoint`` for ``gcp.endpoints.compute`` (`gcp_api.service_url`).

    A bare ``HOST:PORT`` gets a scheme (``http`` for loopback, else ``https``) and the
    ``/compute/v1/`` path; a URL with a path is used as it is.
    """
    from oxeo_flows.gcp_api import service_url

    return service_url("compute", endpoint)


def compute_client(
    endpoint: str | None = None, *, service_account_info: dict[str, Any] | None = None
) -> Any:
    """A Compute Engine discovery client (thread-safe: a fresh HTTP object per request).

    Built by `oxeo_flows.gcp_api.rest_service`; this adds the cluster's error.

    Args:
        endpoint: ``gcp.endpoints.compute``: ``HOST:PORT`` or a base URL; None for Google's.
            A loopback endpoint gets plaintext HTTP and anonymous credentials.
        service_account_info: A service-account key to use instead of the default
            credentials.

    Returns:
        A ``googleapiclient`` resource for ``compute`` ``v1``.

    Raises:
        ClusterError: No credentials could be found, or the client could not be built.
    """
    from oxeo_flows.errors import MissingExtraError
    from oxeo_flows.gcp_api import rest_service

    try:
        return rest_service(
            "compute",
            endpoint,
            service_account_info=service_account_info,
            thread_safe=True,
            timeout=_REQUEST_TIMEOUT,
        )
    except MissingExtraError:
        raise
    except Exception as exc:
        where = f" at {endpoint}" if endpoint else ""
        msg = (
            f"cannot create a Compute Engine client{where}: {type(exc).__name__}: {exc}. "
            "Log in with `gcloud auth application-default login` or set "
            "GOOGLE_APPLICATION_CREDENTIALS (or set gcp.endpoints.compute for an emulator)."
        )
        raise ClusterError(msg) from exc


def gcp_cluster_class() -> type[Any]:
    """Our ``GCPCluster`` subclass (built on first use, so importing this module is cheap)."""
    if "cluster" in _CLASSES:
        return _CLASSES["cluster"]
    instances = require("dask_cloudprovider.gcp.instances", "dask")
    vmcluster = require("dask_cloudprovider.generic.vmcluster", "dask")

    class OxeoGCPScheduler(InheritEnvMixin, SchedulerWaitMixin, instances.GCPScheduler):  # type: ignore[misc,name-defined]
        """A scheduler VM with a bounded, non-blocking wait that notices a stopped VM."""

        async def update_status(self) -> str:
            status: str = await super().update_status()
            if status in _DEAD:
                raise await self.cluster._oxeo_vm_died(self.name, status)
            self._oxeo_boot_workers()
            return status

        def _oxeo_boot_workers(self) -> None:
            """Start the workers' VMs once GCE has assigned this VM its ``networkIP``.

            GCE assigns it at insert (PROVISIONING); dask-cloudprovider's workers read it
            from the cluster (``scheduler_internal_ip``), set here instead of after the
            scheduler answers.
            """
            cluster = self.cluster
            if getattr(cluster, "scheduler_internal_ip", None):
                return
            items = (getattr(self, "gcp_inst", None) or {}).get("items") or [{}]
            nics = items[0].get("networkInterfaces") or [{}]
            ip = nics[0].get("networkIP")
            if not ip:
                return
            cluster.scheduler_internal_ip = ip
            cluster.scheduler_port = self.port
            cluster._oxeo_boot_workers(f"{cluster.protocol}://{ip}:{self.port}")

        async def oxeo_check_alive(self) -> None:
            """Raise `ClusterError` (with the serial console) if the VM has stopped."""
            await self.update_status()

    class OxeoGCPWorker(InheritEnvMixin, instances.GCPWorker):  # type: ignore[misc,name-defined]
        """A worker VM inheriting the cluster's private config."""

    class _OwnClientGCPCluster(instances.GCPCluster):  # type: ignore[misc,name-defined]
        """``GCPCluster.__init__`` without its ADC lookup: the compute client is given.

        dask-cloudprovider's constructor builds its own client (no endpoint setting, always
        application default credentials). This one sets the same attributes from the explicit
        values `gcp_cluster` always passes, and uses ``compute``.
        """

        def __init__(
            self,
            *,
            compute: Any,
            projectid: str,
            zone: str,
            network: str,
            network_projectid: str,
            scheduler_machine_type: str,
            worker_machine_type: str,
            scheduler_ngpus: int = 0,
            scheduler_gpu_type: str | None = None,
            worker_ngpus: int = 0,
            worker_gpu_type: str | None = None,
            filesystem_size: int | None = None,
            disk_type: str | None = None,
            on_host_maintenance: str | None = None,
            source_image: str | None = None,
            docker_image: str | None = None,
            preemptible: bool = False,
            bootstrap: bool = True,
            auto_shutdown: bool = True,
            instance_labels: dict[str, str] | None = None,
            service_account: str | None = None,
            debug: bool = False,
            **kwargs: Any,
        ) -> None:
            import dask.config

            self.compute = compute
            self.config = dask.config.get("cloudprovider.gcp", {})
            cfg = self.config.get
            self.auto_shutdown = auto_shutdown
            self.bootstrap = bootstrap
            self.machine_type = None
            self.scheduler_machine_type = scheduler_machine_type
            self.worker_machine_type = worker_machine_type
            self.ngpus = 0
            self.scheduler_ngpus, self.worker_ngpus = scheduler_ngpus, worker_ngpus
            self.gpu_type = None
            self.scheduler_gpu_type, self.worker_gpu_type = scheduler_gpu_type, worker_gpu_type
            self.debug = debug
            self.options = {
                "cluster": self,
                "config": self.config,
                "projectid": projectid,
                "source_image": source_image or cfg("source_image"),
                "docker_image": docker_image or cfg("docker_image"),
                "filesystem_size": filesystem_size or cfg("filesystem_size"),
                "disk_type": disk_type or cfg("disk_type"),
                "on_host_maintenance": on_host_maintenance or cfg("on_host_maintenance"),
                "zone": zone,
                "network": network,
                "network_projectid": network_projectid,
                "bootstrap": bootstrap,
                "auto_shutdown": auto_shutdown,
                "preemptible": preemptible,
                "instance_labels": instance_labels or cfg("instance_labels"),
                "service_account": service_account or cfg("service_account"),
            }
            self.scheduler_options = {
                **self.options,
                "machine_type": scheduler_machine_type,
                "ngpus": scheduler_ngpus,
                "gpu_type": scheduler_gpu_type,
                "gpu_instance": bool(scheduler_ngpus),
            }
            self.worker_options = {
                **self.options,
                "machine_type": worker_machine_type,
                "ngpus": worker_ngpus,
                "gpu_type": worker_gpu_type,
                "gpu_instance": bool(worker_ngpus),
            }
            kwargs.setdefault("extra_bootstrap", cfg("extra_bootstrap"))
            vmcluster.VMCluster.__init__(self, debug=debug, **kwargs)

    class OxeoGCPCluster(VMClusterMixin, _OwnClientGCPCluster):
        """``GCPCluster`` with a start deadline, cleanup by label and no global config changes."""

        scheduler_class = Pinned(OxeoGCPScheduler)
        worker_class = Pinned(OxeoGCPWorker)

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
                    try:
                        self.compute.instances().delete(
                            project=project, zone=plan.zone, instance=name
                        ).execute()
                    except Exception as exc:
                        # Deleted meanwhile (by its own close): nothing left to do.
                        if getattr(getattr(exc, "resp", None), "status", None) != 404:
                            raise
                return names

            names: list[str] = await self.call_async(sweep)
            return names

        async def _oxeo_vm_died(self, name: str, status: str) -> ClusterError:
            """The error for a VM that stopped during start, with its serial console."""
            project, zone = self.options["projectid"], self._plan.zone

            def serial() -> str:
                out = (
                    self.compute.instances()
                    .getSerialPortOutput(project=project, zone=zone, instance=name)
                    .execute()
                )
                return str(out.get("contents", ""))

            try:
                console = await self.call_async(serial)
            except Exception as exc:
                console = f"(could not read the serial console: {exc})"
            return ClusterError(self._oxeo_died_message(name, status, console))

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
    tls_delivery: Delivery = "secret",
    secret_manager_endpoint: str | None = None,
    start_timeout: float = 600.0,
    cluster_name: str | None = None,
    reuse: bool = False,
    flow_run_id: str | None = None,
    stack_name: str | None = None,
    compute_endpoint: str | None = None,
    service_account_credentials: dict[str, Any] | None = None,
    probe: Probe | None = None,
    parallel_boot: bool = True,
    idle_timeout: float | None = None,
    no_client_timeout: float | None = None,
    nanny: bool = True,
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
        tls: Encrypt with per-cluster, per-role certificates (`oxeo_flows.clusters.pki`).
        tls_delivery: How the VMs get their role's certificate and key: ``secret`` (they read
            a per-cluster Secret Manager secret in ``project`` at boot; the image needs
            oxeo-flows) or ``metadata`` (in their cloud-init: readable with
            ``compute.instances.get``; for images without oxeo-flows).
        secret_manager_endpoint: ``gcp.endpoints.secret-manager`` (``HOST:PORT``), for this
            process and the VMs.
        start_timeout: Deadline for VM creation + scheduler reachable + first workers.
        cluster_name: Name used in labels (default: a fresh ``oxeo-XXXXXXXX``).
        flow_run_id: Flow run id for the labels (default: the current flow run).
        reuse: The cluster outlives this flow run (`oxeo_flows.clusters.reuse`): the client's
            TLS pair is kept in the per-cluster secret ``oxeo-dask-<name>-client`` too.
        stack_name: Stack name for the labels.
        compute_endpoint: ``gcp.endpoints.compute`` (``HOST:PORT`` or a base URL); a loopback
            endpoint is plaintext and anonymous.
        service_account_credentials: A service-account key for the Compute API (default:
            application default credentials).
        probe: Async ``(host, port) -> bool`` reachability check (default: a TCP connect).
        parallel_boot: Create the first workers' VMs while the scheduler VM boots (default);
            False waits for the scheduler first, as dask-cloudprovider does.
        idle_timeout: Seconds without tasks after which the scheduler closes and the VMs shut
            down (None: never).
        no_client_timeout: Seconds without a connected client after which the scheduler
            closes and the VMs shut down (None: never).
        nanny: Run each worker under a Nanny, which restarts a worker that dies (default);
            False runs ``distributed.Worker`` as the VM's container process (one interpreter
            less per worker VM, no restart).
        asynchronous: Create without starting (for use inside an event loop).
        **kwargs: Passed to ``dask_cloudprovider.gcp.GCPCluster``.

    Returns:
        The running cluster.

    Raises:
        ClusterStartTimeout: Not reachable in time; every VM has been deleted.
        ClusterError: The scheduler VM stopped during start (its serial console is in the
            message), or no Compute client could be built; every VM has been deleted.
    """
    deadline = Deadline(start_timeout)
    name = cluster_name or new_cluster_name()
    compute = compute_client(compute_endpoint, service_account_info=service_account_credentials)
    all_labels = {
        **(labels or {}),
        **cluster_labels(name, flow_run_id or current_flow_run_id(), stack_name),
    }
    vm_tls = issue_vm_tls(
        tls,
        name,
        client_secret=reuse,
        delivery=tls_delivery,
        location=f"gcp:{project}",
        endpoint=secret_manager_endpoint,
        labels={
            "oxeo-flows": "dask-cluster",
            **{k: v for k, v in all_labels.items() if k in (LABEL_CLUSTER, LABEL_STACK)},
        },
    )
    security: Any = vm_tls.client_security() if vm_tls else False
    remote: dict[str, Any] = vm_tls.shared_config() if vm_tls else {}
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
        deadline=deadline,
        vm_tls=vm_tls,
        parallel_boot=parallel_boot,
        idle_timeout=idle_timeout,
        no_client_timeout=no_client_timeout,
        nanny=nanny,
    )
    options: dict[str, Any] = {
        "compute": compute,
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
    return start_vm_cluster(gcp_cluster_class(), plan, options)
