"""The ``[dask]`` section and its sub-sections: where a flow's tasks run."""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from oxeo_flows._checks import ImageRef
from oxeo_flows._model import Model
from oxeo_flows.network import (
    GcpLabels,
    SecurityGroupId,
    ServiceAccountEmail,
    SubnetId,
    check_zone,
    parse_scheduler_address,
)
from oxeo_flows.vertex import AcceleratorType, MachineType, machine_check

#: What distributed's ``memory_limit`` accepts: bytes with a unit, a fraction, or ``auto``.
_MEMORY_LIMIT = re.compile(r"^(auto|0|\d+(\.\d+)?\s*([kKmMgGtTpP]i?[bB]?|[bB])?|0?\.\d+)$")


class DaskTlsSection(Model):
    """``[dask.tls]``: TLS for the Dask scheduler connection.

    For the ``address`` backend, TLS material comes from files (``ca-file``, ``cert-file``,
    ``key-file``) or from secrets loaded with `load_secret` (``ca-secret``, ``cert-secret``,
    ``key-secret``); give one of the two for each item. For the cloud backends, ``enabled``
    (default true) creates temporary certificates per cluster.
    """

    enabled: bool | None = Field(
        default=None,
        description="TLS for cloud clusters (default on; false turns it off, with a warning).",
    )
    ca_file: str | None = Field(
        default=None, description="CA certificate file for a tls:// scheduler (address backend)."
    )
    cert_file: str | None = Field(
        default=None, description="Client certificate file (address backend)."
    )
    key_file: str | None = Field(
        default=None, description="Client private key file (address backend)."
    )
    ca_secret: str | None = Field(
        default=None, description="Secret holding the CA certificate PEM (loaded with load_secret)."
    )
    cert_secret: str | None = Field(
        default=None, description="Secret holding the client certificate PEM."
    )
    key_secret: str | None = Field(
        default=None, description="Secret holding the client private key PEM."
    )

    # -- h12tls: how GCE/EC2 VMs get their role's certificate ----------------------------
    vm_certificates: Literal["secret", "metadata"] = Field(
        default="secret",
        description=(
            "gcp/ec2 backends: 'secret' (default) — each VM reads its role's certificate and "
            "key from a per-cluster Secret Manager / Secrets Manager secret at boot (the image "
            "needs oxeo-flows); 'metadata' — they travel in the VMs' cloud-init, readable by "
            "anyone who may read the instance (weaker; for images without oxeo-flows)."
        ),
    )

    @model_validator(mode="after")
    def _one_source_each(self) -> DaskTlsSection:
        for item in ("ca", "cert", "key"):
            if getattr(self, f"{item}_file") and getattr(self, f"{item}_secret"):
                msg = f"give either {item}-file or {item}-secret, not both"
                raise ValueError(msg)
        has = {item: self.has(item) for item in ("ca", "cert", "key")}
        if any(has.values()) and not all(has.values()):
            missing = ", ".join(f"{k}-file or {k}-secret" for k, v in has.items() if not v)
            msg = f"TLS needs a CA, a certificate and a key; missing: {missing}"
            raise ValueError(msg)
        if self.enabled is False and any(has.values()):
            msg = "enabled is false but TLS files or secrets are set; remove one or the other"
            raise ValueError(msg)
        return self

    def has(self, item: str) -> bool:
        """Whether a file or a secret is set for ``item`` (``ca``, ``cert`` or ``key``)."""
        return bool(getattr(self, f"{item}_file") or getattr(self, f"{item}_secret"))

    @property
    def material(self) -> bool:
        """Whether TLS material (files or secrets) is configured."""
        return self.has("ca")


class DaskGcpSection(Model):
    """``[dask.gcp]``: GCE VMs for an ephemeral Dask cluster (network from ``[gcp]``)."""

    zone: str | None = Field(default=None, description="Zone of the VMs (default: gcp.zone).")
    scheduler_machine_type: str = Field(
        default="e2-standard-2", description="Machine type of the scheduler VM."
    )
    worker_machine_type: str = Field(
        default="e2-standard-4", description="Machine type of the worker VMs."
    )
    preemptible: bool = Field(default=False, description="Preemptible (spot) worker VMs.")
    ngpus: int = Field(default=0, ge=0, le=16, description="GPUs per worker VM (needs gpu-type).")
    gpu_type: str | None = Field(
        default=None, description="Accelerator type, e.g. nvidia-tesla-t4 (needed with GPUs)."
    )
    scheduler_ngpus: int = Field(default=0, ge=0, le=16, description="GPUs on the scheduler VM.")
    docker_image: ImageRef | None = None
    source_image: str | None = Field(
        default=None,
        description="Prebuilt VM image (e.g. a Packer image) instead of the default Ubuntu.",
    )
    disk_size_gb: int = Field(default=50, ge=10, le=65536, description="Boot disk size in GB.")
    disk_type: Literal["pd-standard", "pd-balanced", "pd-ssd", "pd-extreme"] = Field(
        default="pd-standard", description="Boot disk type."
    )
    service_account: ServiceAccountEmail | None = Field(
        default=None, description="Service account of the VMs (default: gcp.service-account)."
    )
    public_ip: bool = False
    bootstrap: bool = True
    auto_shutdown: bool = Field(default=True, description="VMs shut down when Dask exits.")
    labels: GcpLabels = Field(default_factory=dict, description="Extra GCE labels.")

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else check_zone(v)

    @model_validator(mode="after")
    def _gpus(self) -> DaskGcpSection:
        if (self.ngpus or self.scheduler_ngpus) and not self.gpu_type:
            msg = (
                f"ngpus={self.ngpus}, scheduler-ngpus={self.scheduler_ngpus} but gpu-type is not "
                "set; set e.g. gpu-type = 'nvidia-tesla-t4' (gcloud compute accelerator-types list)"
            )
            raise ValueError(msg)
        gpu = self.gpu_type if self.ngpus else None
        machine_check(
            "worker-machine-type / gpu-type / ngpus",
            self.worker_machine_type,
            gpu,
            self.ngpus or None,
            platform="gce",
        )
        gpu = self.gpu_type if self.scheduler_ngpus else None
        machine_check(
            "scheduler-machine-type / gpu-type / scheduler-ngpus",
            self.scheduler_machine_type,
            gpu,
            self.scheduler_ngpus or None,
            platform="gce",
        )
        return self


class DaskEc2Section(Model):
    """``[dask.ec2]``: EC2 instances for an ephemeral Dask cluster (VPC from ``[aws]``)."""

    ami: str | None = None
    scheduler_instance_type: str = Field(
        default="t3.medium", description="Instance type of the scheduler."
    )
    worker_instance_type: str = Field(
        default="t3.large", description="Instance type of the workers."
    )
    spot: bool = Field(default=False, description="Spot worker instances.")
    iam_instance_profile: str | None = Field(
        default=None, description="Instance profile name or ARN."
    )
    docker_image: str | None = None
    key_name: str | None = Field(default=None, description="SSH key pair name.")
    public_ip: bool = False
    volume_size_gb: int | None = Field(
        default=None, ge=8, le=65536, description="Root volume size in GB."
    )
    bootstrap: bool = True
    tags: dict[str, str] = Field(default_factory=dict, description="Extra EC2 tags.")
    subnet: SubnetId | None = Field(
        default=None, description="Subnet id (default: the first of aws.subnets); required."
    )
    security_groups: tuple[SecurityGroupId, ...] = Field(
        default=(), description="Security group ids (default: aws.security-groups); required."
    )
    availability_zone: str | None = Field(default=None, description="Availability zone.")

    @field_validator("scheduler_instance_type", "worker_instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        from oxeo_flows.machines import check_ec2_instance

        check_ec2_instance(v)
        return v

    @field_validator("ami")
    @classmethod
    def _ami(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$", v):
            msg = f"{v!r} is not an AMI id (expected 'ami-' followed by 8 or 17 hex digits)"
            raise ValueError(msg)
        return v


class DaskVertexSection(Model):
    """``[dask.vertex]``: Dask workers as replicas of the flow run's own Vertex AI job.

    With ``dask.backend = "vertex"`` the flow run (replica 0 of the job's first worker pool)
    hosts a TLS scheduler, and a second worker pool of ``worker-count`` replicas runs Dask
    workers: no VMs, no VPC peering or firewall rule for Dask, one cold start, torn down with
    the job. ``dask.start-timeout`` bounds the wait for the workers.
    """

    worker_count: int = Field(default=2, ge=1, le=1000)
    """Worker replicas (Dask workers) in the job's second worker pool."""
    worker_machine_type: MachineType | None = None
    """Machine type of the worker replicas (default: the flow run's `vertex.machine-type`)."""
    worker_accelerator_type: AcceleratorType | None = None
    """GPU type of each worker replica, e.g. `NVIDIA_TESLA_T4`."""
    worker_accelerator_count: int | None = Field(default=None, ge=1, le=16)
    """GPUs per worker replica (with `worker-accelerator-type`; default 1)."""
    worker_image: ImageRef | None = None
    """Image of the worker replicas (default: the flow run's image)."""
    worker_disk_size_gb: int = Field(default=100, ge=100, le=64000)
    """Boot disk of each worker replica, in GB."""
    scheduler_port: int = Field(default=8786, ge=1024, le=65535)
    """Port the scheduler listens on, on replica 0."""

    @model_validator(mode="after")
    def _accelerator(self) -> DaskVertexSection:
        if self.worker_accelerator_count is not None and self.worker_accelerator_type is None:
            msg = (
                f"worker-accelerator-count is {self.worker_accelerator_count} but "
                "worker-accelerator-type is not set; give both (e.g. 'NVIDIA_TESLA_T4')"
            )
            raise ValueError(msg)
        if self.worker_machine_type is not None:
            machine_check(
                "worker-machine-type / worker-accelerator-type / worker-accelerator-count",
                self.worker_machine_type,
                self.worker_accelerator_type,
                self.worker_accelerator_count,
                platform="vertex",
            )
        return self


#: Which cluster keyword each sizing setting (``dask.parameters``) sets, per backend; the
#: adaptive bounds ``adapt_min`` / ``adapt_max`` apply to every backend that scales.
SIZING_TARGETS: dict[str, dict[str, str]] = {
    "local": {
        "n_workers": "n_workers",
        "threads_per_worker": "threads_per_worker",
        "memory_limit": "memory_limit",
    },
    "gcp": {
        "n_workers": "n_workers",
        "worker_machine_type": "worker_machine_type",
        "ngpus": "ngpus",
        "gpu_type": "gpu_type",
    },
    "ec2": {"n_workers": "n_workers", "worker_instance_type": "worker_instance_type"},
}
_PARAMETER_TARGETS = frozenset(
    {"adapt_min", "adapt_max"}.union(*(set(t) for t in SIZING_TARGETS.values()))
)


class DaskSection(Model):
    """``[dask]``: where a flow's tasks run.

    ``parameters`` maps a cluster setting to the name of a flow parameter that sizes it when the
    cluster is created, e.g. ``parameters = {n-workers = "n_workers", ngpus = "gpus"}``.
    Settings: n-workers, threads-per-worker, memory-limit, worker-machine-type (gcp),
    worker-instance-type (ec2), ngpus, gpu-type (gcp), adapt-min, adapt-max.
    """

    backend: Literal["local", "address", "gcp", "ec2", "vertex"] = Field(
        default="local",
        description=(
            "Where tasks run: local, address, gcp, ec2, or vertex (workers inside the flow run's "
            "Vertex job)."
        ),
    )
    address: str | None = Field(
        default=None, description="Scheduler address for the address backend (tls://HOST:PORT)."
    )
    start_timeout: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description=(
            "Seconds for the cluster to start / the scheduler to answer "
            "(default: local 120, address 30, cloud 600)."
        ),
    )
    n_workers: int | None = Field(
        default=None,
        ge=0,
        le=10000,
        description="Workers to start with (cloud default: adapt minimum, or 1).",
    )
    threads_per_worker: int | None = Field(
        default=None, ge=1, le=1024, description="Local backend: threads per worker."
    )
    processes: bool = Field(
        default=False, description="Local backend: worker processes instead of threads."
    )
    memory_limit: str | None = Field(
        default=None, description="Local backend: per-worker memory limit, e.g. 4GiB."
    )

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit(cls, v: str | None) -> str | None:
        if v is not None and not _MEMORY_LIMIT.match(v.strip()):
            msg = (
                f"{v!r} is not a memory limit; use a size, e.g. '4GiB' or '512MB', a fraction "
                "of the machine such as '0.5', or 'auto'"
            )
            raise ValueError(msg)
        return v

    adapt: tuple[int, int] | None = Field(
        default=None, description="Adaptive scaling (minimum, maximum)."
    )
    parameters: dict[str, str] = Field(
        default_factory=dict,
        description="Cluster setting -> flow parameter that sizes it (read at cluster creation).",
    )
    plaintext: bool = Field(
        default=False,
        description=(
            "Allow a plain tcp:// scheduler address (unencrypted and unauthenticated: anyone on "
            "the network can send it tasks). Off: a tcp:// address is refused."
        ),
    )
    # -- h12tls: named clusters that outlive their flow run --------------------------------
    cluster_name: str | None = Field(
        default=None,
        description=(
            "gcp/ec2 backends: the cluster's name (its label / tag); with reuse, later flow "
            "runs connect to the running cluster of this name."
        ),
    )
    reuse: bool = Field(
        default=False,
        description=(
            "gcp/ec2 backends: keep the named cluster (cluster-name) running after the flow "
            "run and connect to it from later runs; it ends by dask.idle-timeout or "
            "`oxeo-flows clusters stop NAME`."
        ),
    )
    # -- lifecycle of gcp / ec2 clusters (h12boot) --
    parallel_boot: bool = True
    """gcp / ec2: create the worker VMs as soon as the scheduler's private address is known,
    while the scheduler VM boots (one VM boot instead of two). False: after the scheduler
    answers, as dask-cloudprovider does."""
    nanny: bool = True
    """gcp / ec2: run each worker VM's Dask worker under a Nanny, which restarts a worker that
    dies (e.g. killed for memory). False: the worker is the VM's container process itself, one
    interpreter less per worker VM (about 0.45 CPU-seconds and 100 MB less at start), and no
    restart: a worker that dies is gone, its VM shuts down."""
    idle_timeout: float | None = Field(default=None, ge=0, le=7 * 86400)
    """gcp / ec2: seconds without a task to run after which the scheduler closes and every VM
    shuts down (distributed's ``idle-timeout``; default 900, 0 turns it off)."""
    no_client_timeout: float | None = Field(default=None, ge=0, le=7 * 86400)
    """gcp / ec2: seconds without a connected client (e.g. the flow-run process was killed)
    after which the scheduler closes and every VM shuts down (default 900, 0 turns it off)."""

    tls: DaskTlsSection = DaskTlsSection()
    gcp: DaskGcpSection = DaskGcpSection()
    ec2: DaskEc2Section = DaskEc2Section()
    vertex: DaskVertexSection = DaskVertexSection()

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            parse_scheduler_address(v)
        return v

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", v):
            msg = (
                f"{v!r} is not a cluster name: use lowercase letters, digits and '-', starting "
                "with a letter, at most 40 characters (it is a GCE label value and part of "
                "secret ids), e.g. 'shared-etl'"
            )
            raise ValueError(msg)
        return v

    @field_validator("adapt")
    @classmethod
    def _adapt(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None:
            low, high = v
            if low < 0 or high < 1 or low > high:
                msg = (
                    "adapt must be (minimum, maximum) with 0 <= minimum <= maximum and "
                    f"maximum >= 1; got {list(v)}"
                )
                raise ValueError(msg)
        return v

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, v: Any) -> Any:
        if isinstance(v, dict):
            out = {}
            for key, value in v.items():
                name = str(key).replace("-", "_")
                if name not in _PARAMETER_TARGETS:
                    close = difflib.get_close_matches(name, sorted(_PARAMETER_TARGETS), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    msg = (
                        f"{key!r} cannot be sized from a flow parameter{hint}; choose from: "
                        f"{', '.join(sorted(_PARAMETER_TARGETS))}"
                    )
                    raise ValueError(msg)
                if not isinstance(value, str) or not value.isidentifier():
                    msg = f"parameters.{key} must name a flow parameter, got {value!r}"
                    raise ValueError(msg)
                out[name] = value
            return out
        return v

    @model_validator(mode="after")
    def _backend(self) -> DaskSection:
        if self.backend == "address" and not self.address:
            msg = "backend 'address' needs dask.address, e.g. 'tls://10.0.0.5:8786'"
            raise ValueError(msg)
        if self.backend != "local" and self.processes:
            msg = f"processes applies to the 'local' backend only, not {self.backend!r}"
            raise ValueError(msg)
        if self.address and self.address.startswith("tcp://") and self.tls.material:
            msg = (
                f"TLS files/secrets are set but the address {self.address!r} is tcp://; use tls://"
            )
            raise ValueError(msg)
        if self.address and self.address.startswith("tcp://") and not self.plaintext:
            msg = (
                f"the scheduler address {self.address!r} is plain tcp://: tasks and results travel "
                "unencrypted and anyone who reaches the port can run code. Use tls:// with "
                "dask.tls (ca/cert/key files or secrets), or opt in with dask.plaintext = true"
            )
            raise ValueError(msg)
        if self.reuse:
            if self.backend not in ("gcp", "ec2"):
                msg = f"reuse applies to the gcp and ec2 backends, not {self.backend!r}"
                raise ValueError(msg)
            if not self.cluster_name:
                msg = "reuse needs cluster-name: the name later flow runs find the cluster by"
                raise ValueError(msg)
            if self.adapt is not None:
                msg = (
                    "adapt does not apply with reuse: a reused cluster is not scaled by any one "
                    "flow run; set n-workers instead"
                )
                raise ValueError(msg)
        if self.n_workers == 0 and self.adapt is None:
            msg = (
                "n-workers is 0 and adapt is not set: no worker would ever run a task and the "
                "flow would wait forever. Set n-workers >= 1, or adapt = [0, N]"
            )
            raise ValueError(msg)
        return self
