"""Stacks: the infrastructure of a flow repository, declared once.

A *stack* says where flow runs go (``runner``), where tasks go (``dask``), where secrets come
from (``secrets``), and the cloud settings those need (``gcp``, ``aws``, ``vertex``,
``storage``, ``docker``, ``pools``). Every factory in oxeo-flows reads the active stack, so a
flow's code does not change between a laptop (the built-in ``local`` stack) and production.

Resolution order of each value, highest first:

1. explicit arguments (``load_stack(overrides=...)``, or a factory's keyword arguments);
2. environment variables ``OXEO_FLOWS_<SECTION>__<KEY>`` (nested with ``__``, e.g.
   ``OXEO_FLOWS_GCP__REGION``, ``OXEO_FLOWS_DASK__GCP__WORKER_MACHINE_TYPE``); lists and tables
   may be given as JSON, lists also comma-separated;
3. ``[tool.oxeo-flows.stacks.<name>]`` in the nearest ``pyproject.toml`` (searched upward from
   the working directory), or ``[stacks.<name>]`` in an ``oxeo-flows.toml`` beside it (which wins),
   or the file named by ``OXEO_FLOWS_CONFIG``; a stack may ``extends = "<other stack>"``;
4. built-in defaults.

The active stack is: the ``name`` argument > ``OXEO_FLOWS_STACK`` > ``default-stack`` in the
file > ``local``. The ``local`` stack exists even without a file and needs no cloud.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from oxeo_flows._checks import ImageRef
from oxeo_flows._model import Model, build, format_validation_error, kebab
from oxeo_flows.docker_pool import DockerFields
from oxeo_flows.errors import ConfigError
from oxeo_flows.network import (
    AwsNetwork,
    AwsNetworkFields,
    GcpLabels,
    GcpNetwork,
    GcpNetworkFields,
    SecurityGroupId,
    ServiceAccountEmail,
    SubnetId,
    Zone,
    check_project_id,
    check_zone,
    parse_scheduler_address,
)
from oxeo_flows.vertex import AcceleratorType, MachineType, VertexFields, machine_check

__all__ = [
    "AwsSection",
    "DaskEc2Section",
    "DaskGcpSection",
    "DaskSection",
    "DaskVertexSection",
    "DaskTlsSection",
    "DockerPoolSection",
    "DockerSection",
    "GcpEndpoints",
    "GcpSection",
    "ProcessPoolSection",
    "SIZING_TARGETS",
    "SecretsSection",
    "Stack",
    "StorageSection",
    "VertexPoolSection",
    "VertexSection",
    "find_config_file",
    "load_stack",
    "resolve_stack",
]

ENV_PREFIX = "OXEO_FLOWS_"
#: Environment variables with the prefix that are not stack keys.
RESERVED_ENV = frozenset({"OXEO_FLOWS_STACK", "OXEO_FLOWS_CONFIG"})
LOCAL = "local"
_FREEFORM = frozenset({"labels", "env", "variables", "parameters", "tags", "pools"})


# ----------------------------------------------------------------------------- sections


class GcpEndpoints(Model):
    """``[gcp.endpoints]``: API endpoint overrides (private endpoints, emulators).

    A loopback endpoint (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``) is dialed in
    plaintext with anonymous credentials; anything else with TLS and normal credentials.

    Attributes:
        secret_manager: ``HOST:PORT`` of Secret Manager (used by the ``gcp`` secret source).
        aiplatform: ``HOST:PORT`` of Vertex AI.
        compute: ``HOST:PORT`` of Compute Engine.
        service_networking: ``HOST:PORT`` of Service Networking.
    """

    secret_manager: str | None = None
    """Secret Manager endpoint (host:port), e.g. a private endpoint or an emulator."""
    aiplatform: str | None = None
    """Vertex AI endpoint override."""
    compute: str | None = None
    """Compute Engine API base URL override (used by `doctor` and `clusters`)."""
    service_networking: str | None = None
    """Service Networking API base URL override (used by `doctor`)."""


class GcpSection(GcpNetworkFields):
    """``[gcp]``: the Google Cloud project and its private network."""

    zone: Zone | None = None
    """Default zone, in `region`, e.g. `europe-west4-a`."""
    service_account: ServiceAccountEmail | None = None
    """Service account email for Vertex jobs and Dask VMs."""
    credentials_block: str | None = None
    """Name of a saved `GcpCredentials` block (default: application default credentials)."""
    endpoints: GcpEndpoints = GcpEndpoints()
    """API endpoint overrides."""

    @model_validator(mode="after")
    def _zone_in_region(self) -> GcpSection:
        if self.zone and self.region and not self.zone.startswith(self.region + "-"):
            msg = f"zone {self.zone!r} is not in region {self.region!r}"
            raise ValueError(msg)
        return self

    def network_spec(self) -> GcpNetwork | None:
        """The `GcpNetwork` this section describes, or None when no network is set."""
        if not self.network:
            return None
        if not self.project:
            msg = f"gcp.network is {self.network!r} but gcp.project is not set"
            raise ConfigError(msg)
        fields = {name: getattr(self, name) for name in GcpNetworkFields.model_fields}
        return GcpNetwork.model_validate(fields)


class AwsSection(AwsNetworkFields):
    """``[aws]``: the AWS account, region and VPC."""

    profile: str | None = None
    """Named profile from `~/.aws/config`."""
    endpoint_url: str | None = None
    """Endpoint URL override (a VPC endpoint, or moto in tests); `AWS_ENDPOINT_URL` also works."""
    assume_role_arn: str | None = None
    """Role to assume for every AWS call."""
    credentials_block: str | None = None
    """Name of a saved `AwsCredentials` block."""

    @model_validator(mode="after")
    def _network(self) -> AwsSection:
        if (self.vpc or self.subnets or self.security_groups) and not self.region:
            msg = "aws.region is required when a vpc, subnets or security-groups are set"
            raise ValueError(msg)
        return self

    def network_spec(self) -> AwsNetwork | None:
        """The `AwsNetwork` this section describes, or None when no region is set."""
        if not self.region:
            return None
        fields = {name: getattr(self, name) for name in AwsNetworkFields.model_fields}
        return AwsNetwork.model_validate(fields)


class VertexSection(VertexFields):
    """``[vertex]``: defaults for flow runs as Vertex AI custom jobs (see `oxeo_flows.vertex_job`).

    The job settings are `VertexJob`'s (one field set, `oxeo_flows.vertex.VertexFields`).
    ``region``, ``service-account`` and ``credentials-block`` fall back to the ``gcp`` section;
    the network and reserved IP ranges always come from it (``private-network = false`` opts
    out of VPC peering). ``max-run-time-hours`` defaults to 24 (Prefect's own default is 1).
    ``api-key-secret`` names the Secret Manager secret holding the Prefect API key, read at job
    start by ``python -m oxeo_flows.vertex_entrypoint`` instead of travelling in the job spec.
    """

    private_network: bool = True
    """Attach the stack's `gcp.network` (VPC peering); false is an explicit opt-out."""
    credentials_block: str | None = None
    """`GcpCredentials` block the worker uses (default: `gcp.credentials-block`)."""
    work_pool: str | None = None
    """Work pool deployments of this stack use for the `vertex` runner."""


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
    docker_image: str | None = None
    source_image: str | None = Field(
        default=None,
        description="Prebuilt VM image (e.g. a Packer image) instead of the default Ubuntu.",
    )
    disk_size_gb: int = Field(default=50, ge=10, le=65536, description="Boot disk size in GB.")
    disk_type: str = Field(default="pd-standard", description="Boot disk type.")
    service_account: str | None = Field(
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
        if self.n_workers == 0 and self.adapt is None:
            msg = (
                "n-workers is 0 and adapt is not set: no worker would ever run a task and the "
                "flow would wait forever. Set n-workers >= 1, or adapt = [0, N]"
            )
            raise ValueError(msg)
        return self


class StorageSection(Model):
    """``[storage]``: where deployment code is stored (S3)."""

    bucket: str | None = None
    """S3 bucket for deployment code."""
    folder: str | None = None
    """Folder (key prefix) in the bucket."""
    block_name: str | None = None
    """Name of the saved `S3Bucket` block (default: `<stack>-code-<folder or bucket>`)."""
    credentials_block: str | None = None
    """Name of the `AwsCredentials` block the storage block uses."""
    delete: bool = True
    """Delete remote files that no longer exist locally when syncing."""
    ignore: tuple[str, ...] = ()
    """Extra ignore patterns (gitignore syntax) for code sync."""
    max_concurrency: int = Field(default=8, ge=1, le=64)
    """Parallel uploads / downloads."""
    image_code_dir: str | None = None
    """The image has the code: the absolute directory inside the flow image that holds this
    project; deployments run from there and nothing is synced (instead of `bucket`)."""

    @field_validator("image_code_dir")
    @classmethod
    def _image_code_dir(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or any(c.isspace() for c in v)):
            msg = (
                f"{v!r} is not an absolute directory in the image (e.g. '/opt/prefect/flows', "
                "where the Dockerfile copies the project)"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> StorageSection:
        if self.bucket and self.image_code_dir:
            msg = (
                "bucket and image-code-dir are both set: deployments either pull the code from "
                "S3 (bucket) or run it from the image (image-code-dir); keep one"
            )
            raise ValueError(msg)
        return self

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        from oxeo_flows._checks import check_bucket_name

        return None if v is None else _plain_error(check_bucket_name, v, "bucket")

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        from oxeo_flows._checks import check_folder

        return None if v is None else _plain_error(check_folder, v, "folder")


class DockerSection(DockerFields):
    """``[docker]``: defaults for flow runs as Docker containers (``docker`` work pools).

    The container settings are `DockerJob`'s (one field set,
    `oxeo_flows.docker_pool.DockerFields`); the registry keys describe the
    `DockerRegistryCredentials` block the pool references.
    """

    registry_url: str | None = None
    """Private registry URL."""
    registry_username: str | None = None
    """Registry user name."""
    registry_password_secret: str | None = None
    """Secret (name or reference) holding the registry password."""
    registry_credentials_block: str | None = None
    """Name of the `DockerRegistryCredentials` block."""
    work_pool: str | None = None
    """Work pool deployments of this stack use for the `docker` runner."""


def _plain_error(check: Any, value: str, label: str) -> str:
    """Run a check that raises ConfigError; re-raise as ValueError so pydantic reports it."""
    try:
        result: str = check(value, where=label)
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix(f"{label}: ")) from None
    return result


SecretSourceName = Literal["env", "prefect", "gcp", "aws"]


class SecretsSection(Model):
    """``[secrets]``: where `load_secret` looks, in order, how it retries and how long it caches.

    Attributes:
        sources: Sources asked in order for a plain secret name (``env``, ``prefect``, ``gcp``,
            ``aws``).
        cache_ttl: Seconds a loaded value is reused (0 disables the cache).
        required: Secrets (names or references) that ``oxeo-flows secrets check`` must resolve.
        gcp_project: Project of GCP Secret Manager secrets (default: ``gcp.project``).
        retries: Retries of a transient failure (unavailable, throttled, deadline exceeded).
        retry_initial_delay: First backoff delay in seconds; doubles on each retry.
        retry_max_delay: Upper bound of one backoff delay in seconds.
        timeout: Deadline in seconds of one call to a remote source.
        env_prefix: Prefix of the environment variable a name is read from (``env`` source).
    """

    sources: tuple[SecretSourceName, ...] = ("env", "prefect")
    """Where `load_secret` looks, in order: `env`, `prefect`, `gcp`, `aws`."""
    cache_ttl: float = Field(default=300.0, ge=0)
    """Seconds a loaded secret is cached in the process (0 disables)."""
    required: tuple[str, ...] = ()
    """Secrets that must resolve (`oxeo-flows secrets check`, `doctor`)."""
    gcp_project: str | None = None
    """Project of Secret Manager secrets (default: `gcp.project`)."""
    retries: int = Field(default=3, ge=0, le=10)
    """Retries of transient errors (unavailable, throttling, deadline)."""
    retry_initial_delay: float = Field(default=0.2, ge=0, le=60)
    """First backoff delay in seconds."""
    retry_max_delay: float = Field(default=5.0, ge=0, le=300)
    """Largest backoff delay in seconds."""
    timeout: float = Field(default=30.0, gt=0, le=600)
    """Deadline of one backend call in seconds."""
    env_prefix: str = ""
    """Prefix of environment variable names for the `env` source."""

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            msg = f"secret sources must not repeat: {list(v)}"
            raise ValueError(msg)
        return v

    @field_validator("gcp_project")
    @classmethod
    def _gcp_project(cls, v: str | None) -> str | None:
        return None if v is None else check_project_id(v)

    @field_validator("env_prefix")
    @classmethod
    def _env_prefix(cls, v: str) -> str:
        if v and not all(c.isascii() and (c.isalnum() or c == "_") for c in v):
            msg = f"{v!r} is not an environment variable prefix (use A-Z, 0-9 and _)"
            raise ValueError(msg)
        return v


class _PoolCommon(Model):
    description: str | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    adopt: bool = False


class VertexPoolSection(VertexSection, _PoolCommon):
    """``[pools.<name>]`` with ``type = "vertex-ai"``: the pool's job defaults.

    Layered over ``[vertex]`` (`Stack.pool_settings`); the checks across keys run on the
    layered values, when the stack loads.
    """

    type: Literal["vertex-ai"]

    @model_validator(mode="after")
    def _together(self) -> VertexPoolSection:
        return self  # across keys: checked on the layered settings (Stack._layered_pools)


class DockerPoolSection(DockerSection, _PoolCommon):
    """``[pools.<name>]`` with ``type = "docker"``: the pool's job defaults.

    Layered over ``[docker]`` (`Stack.pool_settings`); the checks across keys run on the
    layered values, when the stack loads.
    """

    type: Literal["docker"]

    @model_validator(mode="after")
    def _consistent(self) -> DockerPoolSection:
        return self  # across keys: checked on the layered settings (Stack._layered_pools)


#: Keys of a ``[pools.<name>]`` section that belong to the pool, not to its job.
_POOL_ONLY = frozenset({"type", "description", "concurrency_limit", "adopt"})
#: Tables merged key by key when a pool section layers over its kind's section.
_MERGED_TABLES = frozenset({"env", "labels"})
#: Pool type -> the stack section it layers over.
_LAYERED_ON = {"vertex-ai": "vertex", "docker": "docker"}


class ProcessPoolSection(_PoolCommon):
    """``[pools.<name>]`` with ``type = "process"``."""

    type: Literal["process"]
    env: dict[str, str] = {}
    working_dir: str | None = None


PoolSection = Annotated[
    VertexPoolSection | DockerPoolSection | ProcessPoolSection, Field(discriminator="type")
]


class Stack(Model):
    """A resolved, validated stack. Get one with `load_stack`.

    Attributes:
        name: The stack's name.
        runner: Where flow runs go when deployed: ``process``, ``docker`` or ``vertex``.
        work_pool: Default work pool for deployments (defaults to ``<stack>-<runner>``).
        gcp: Google Cloud project and network.
        aws: AWS account, region and VPC.
        vertex: Vertex AI job defaults.
        dask: Where tasks run.
        storage: Code storage for deployments.
        docker: Docker job defaults.
        secrets: Secret sources, cache and required secrets.
        pools: Work pools that ``oxeo-flows apply`` manages.
        variables: Prefect variables that ``oxeo-flows apply`` manages.
    """

    name: str
    extends: str | None = None
    """Another stack this one inherits from, key by key."""
    runner: Literal["process", "docker", "vertex"] = "process"
    """Where flow runs go when deployed: `process`, `docker` or `vertex`."""
    work_pool: str | None = None
    """Default work pool of deployments (default: `<stack>-<runner>`)."""
    gcp: GcpSection = GcpSection()
    aws: AwsSection = AwsSection()
    vertex: VertexSection = VertexSection()
    dask: DaskSection = DaskSection()
    storage: StorageSection = StorageSection()
    docker: DockerSection = DockerSection()
    secrets: SecretsSection = SecretsSection()
    pools: dict[str, PoolSection] = {}
    variables: dict[str, Any] = {}

    _origins: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)
    _file: Path | None = PrivateAttr(default=None)

    @property
    def file(self) -> Path | None:
        """The configuration file the stack was read from, if any."""
        return self._file

    def origin(self, *path: str) -> str:
        """Where the value at ``path`` came from.

        Args:
            *path: Field names, e.g. ``origin("gcp", "region")``.

        Returns:
            ``"argument"``, ``"env OXEO_FLOWS_..."``, ``"<file>"`` or ``"default"``.
        """
        key = tuple(path)
        while key:
            if key in self._origins:
                return self._origins[key]
            key = key[:-1]
        return "default"

    def describe(self, *path: str) -> str:
        """A human label for a key, e.g. ``"gcp.region of stack 'prod' (from pyproject.toml)"``."""
        dotted = ".".join(kebab(p) for p in path)
        return f"{dotted} of stack {self.name!r} (from {self.origin(*path)})"

    def gcp_network(self) -> GcpNetwork | None:
        """The stack's GCP network, or None when ``gcp.network`` is not set."""
        return self.gcp.network_spec()

    def aws_network(self) -> AwsNetwork | None:
        """The stack's AWS network, or None when ``aws.region`` is not set."""
        return self.aws.network_spec()

    def pool_settings(self, name: str) -> Model:
        """The job settings of ``[pools.<name>]`` layered over its kind's section.

        The layering rule: a ``vertex-ai`` pool starts from ``[vertex]``, a ``docker`` pool from
        ``[docker]``; every key the pool sets replaces that key, except ``env`` and ``labels``,
        which merge key by key (the pool's entries win). ``description``,
        ``concurrency-limit`` and ``adopt`` belong to the pool alone.

        Args:
            name: A declared pool of type ``vertex-ai`` or ``docker``.

        Returns:
            A `VertexSection` or `DockerSection` with the layered values.

        Raises:
            ConfigError: The layered values are invalid (the message names the pool).
        """
        section = self.pools[name]
        base: Model = getattr(self, _LAYERED_ON[section.type])
        data = base.model_dump(exclude_unset=True)
        for key in section.model_fields_set - _POOL_ONLY:
            value = getattr(section, key)
            if key in _MERGED_TABLES and isinstance(value, dict):
                data[key] = {**data.get(key, {}), **value}
            else:
                data[key] = value
        where = f"pools.{name} of stack {self.name!r} (layered over [{_LAYERED_ON[section.type]}])"
        return build(type(base), data, where=where, prefix=f"pools.{name}.")

    @model_validator(mode="after")
    def _layered_pools(self) -> Stack:
        for name, section in self.pools.items():
            if section.type in _LAYERED_ON:
                try:
                    self.pool_settings(name)
                except ConfigError as exc:
                    lines = str(exc).splitlines()[1:]
                    reasons = "; ".join(line.strip().removeprefix("- ") for line in lines)
                    layered = _LAYERED_ON[section.type]
                    msg = f"{reasons} (pools.{name}, layered over [{layered}])"
                    raise ValueError(msg) from None
        return self

    @model_validator(mode="after")
    def _dask_in_vertex(self) -> Stack:
        if self.dask.backend == "vertex" and self.runner != "vertex":
            msg = (
                "dask.backend is 'vertex' (Dask workers inside the flow run's Vertex AI job) but "
                f"runner is {self.runner!r}: set runner = 'vertex', or choose another backend"
            )
            raise ValueError(msg)
        return self

    @property
    def default_work_pool(self) -> str:
        """The pool deployments go to when none is given."""
        return self.work_pool or f"{self.name}-{self.runner}"


# ----------------------------------------------------------------------------- loading


def find_config_file(start: Path | None = None) -> Path | None:
    """Find the configuration file for a project directory.

    ``OXEO_FLOWS_CONFIG`` wins when set. Otherwise the search walks up from ``start`` (the
    working directory by default) and stops at the first directory holding an
    ``oxeo-flows.toml`` (preferred) or a ``pyproject.toml``; a ``pyproject.toml`` without a
    ``[tool.oxeo-flows]`` table means "no configuration" (the project root was found).

    Args:
        start: Directory to start from.

    Returns:
        The file, or None when there is none.
    """
    explicit = os.environ.get("OXEO_FLOWS_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            msg = f"OXEO_FLOWS_CONFIG points to {str(path)!r}, which is not a file"
            raise ConfigError(msg)
        return path
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        dedicated = directory / "oxeo-flows.toml"
        if dedicated.is_file():
            return dedicated
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            return pyproject
    return None


def _read_table(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    except UnicodeDecodeError as exc:
        msg = (
            f"{path} is not UTF-8 text (undecodable byte at offset {exc.start}); "
            "TOML files must be UTF-8: re-save it as UTF-8"
        )
        raise ConfigError(msg) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}. Fix the syntax (see https://toml.io)."
        raise ConfigError(msg) from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        table = tool.get("oxeo-flows") if isinstance(tool, dict) else None
        if table is None:
            if "oxeo_flows" in tool:
                msg = (
                    f"{path}: the table is spelled [tool.oxeo-flows] (with a hyphen), "
                    "not [tool.oxeo_flows]"
                )
                raise ConfigError(msg)
            return {}
    else:
        table = data
    if not isinstance(table, dict):
        msg = f"{path}: the oxeo-flows configuration must be a table"
        raise ConfigError(msg)
    known = {"default-stack", "stacks"}
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else "stack settings go under stacks.<name>"
            )
            msg = f"{path}: unknown top-level key {key!r} ({hint})"
            raise ConfigError(msg)
    stacks = table.get("stacks", {})
    if not isinstance(stacks, dict) or not all(isinstance(v, dict) for v in stacks.values()):
        msg = (
            f"{path}: 'stacks' must be a table of tables, e.g. [stacks.prod] "
            "or [tool.oxeo-flows.stacks.prod]"
        )
        raise ConfigError(msg)
    default = table.get("default-stack")
    if default is not None and not isinstance(default, str):
        msg = f"{path}: default-stack must be a string, got {default!r}"
        raise ConfigError(msg)
    return table


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in RESERVED_ENV:
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            msg = (
                f"environment variable {var} has an empty key part; "
                "nest with '__' (e.g. OXEO_FLOWS_GCP__REGION)"
            )
            raise ConfigError(msg)
        value: Any = raw
        stripped = raw.strip()
        if not stripped:
            msg = (
                f"environment variable {var} is set but empty; give it a value, or unset it "
                f"(unset {var}) to use the stack's value"
            )
            raise ConfigError(msg)
        if stripped[0] in "[{":
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                msg = f"environment variable {var} looks like JSON but does not parse: {exc}"
                raise ConfigError(msg) from None
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                msg = f"environment variable {var} conflicts with another OXEO_FLOWS_ variable"
                raise ConfigError(msg)
            node = child
        node[parts[-1]] = value
        origins[tuple(parts)] = f"env {var}"
    return data, origins


def _merge(
    base: dict[str, Any],
    top: Mapping[str, Any],
    origins: dict[tuple[str, ...], str],
    label: str,
    path: tuple[str, ...] = (),
) -> dict[str, Any]:
    out = dict(base)
    freeform = bool(path) and path[-1] in _FREEFORM and not (len(path) >= 2 and path[-2] == "pools")
    for key, value in top.items():
        # Accept both spellings; store the Python one so that layers merge. Keys of free-form
        # tables (labels, env, pool names...) are kept as written.
        name = key if freeform else key.replace("-", "_")
        here = (*path, name)
        if isinstance(value, Mapping):
            current = out.get(name)
            out[name] = _merge(
                current if isinstance(current, dict) else {}, value, origins, label, here
            )
        else:
            out[name] = value
            origins[here] = label
    return out


def _split_lists(model: type[Model], data: dict[str, Any]) -> dict[str, Any]:
    """Let env vars give tuple fields as comma-separated strings."""
    out = dict(data)
    for name, info in model.model_fields.items():
        if name not in out:
            continue
        value = out[name]
        ann = str(info.annotation)
        if isinstance(value, str) and ann.startswith("tuple[") and "int" not in ann:
            out[name] = tuple(p.strip() for p in value.split(",") if p.strip())
        elif isinstance(value, dict):
            sub = _submodel(info.annotation)
            if sub is not None:
                out[name] = _split_lists(sub, value)
    return out


def _submodel(annotation: Any) -> type[Model] | None:
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return annotation
    return None


def _resolve_extends(
    stacks: Mapping[str, dict[str, Any]], name: str, where: str
) -> list[tuple[str, dict[str, Any]]]:
    chain: list[tuple[str, dict[str, Any]]] = []
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            msg = f"{where}: stacks extend each other in a cycle: {' -> '.join([*seen, current])}"
            raise ConfigError(msg)
        seen.append(current)
        table = stacks.get(current)
        if table is None:
            if current == LOCAL:
                table = {}
            else:
                msg = f"{where}: stack {seen[-2]!r} extends {current!r}, which is not defined"
                raise ConfigError(msg)
        chain.append((current, table))
        parent = table.get("extends")
        if parent is not None and not isinstance(parent, str):
            msg = f"{where}: stacks.{current}.extends must be a stack name"
            raise ConfigError(msg)
        current = parent
    return list(reversed(chain))


def load_stack(
    name: str | None = None,
    *,
    project_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Stack:
    """Resolve and validate a stack.

    Args:
        name: Stack to load; defaults to ``OXEO_FLOWS_STACK``, then the file's
            ``default-stack``, then ``local``.
        project_dir: Where to start looking for ``oxeo-flows.toml`` / ``pyproject.toml``
            (default: the working directory).
        overrides: Explicit values, highest precedence, nested like the TOML
            (e.g. ``{"gcp": {"region": "europe-west1"}}``).
        environ: Environment to read ``OXEO_FLOWS_*`` from (default: ``os.environ``).

    Returns:
        The validated stack.

    Raises:
        ConfigError: Unknown stack, invalid file, or invalid values; the message names the file,
            the stack and the key, and how to fix it.

    Example:
        ```python
        from oxeo_flows import load_stack

        stack = load_stack()          # "local" unless configured otherwise
        print(stack.name, stack.dask.backend)
        ```
    """
    env = os.environ if environ is None else environ
    path = find_config_file(Path(project_dir) if project_dir is not None else None)
    table = _read_table(path) if path else {}
    stacks: dict[str, dict[str, Any]] = table.get("stacks", {})
    where_file = str(path) if path else "(no configuration file)"

    chosen = name or env.get("OXEO_FLOWS_STACK") or table.get("default-stack") or LOCAL
    how = (
        "argument"
        if name
        else "OXEO_FLOWS_STACK"
        if env.get("OXEO_FLOWS_STACK")
        else "default-stack"
        if table.get("default-stack")
        else "built-in default"
    )
    if chosen not in stacks and chosen != LOCAL:
        available = sorted({LOCAL, *stacks})
        close = difflib.get_close_matches(chosen, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = (
            f"Unknown stack {chosen!r} (chosen by {how}); {where_file} defines: "
            f"{', '.join(available)}.{hint}"
        )
        raise ConfigError(msg)

    origins: dict[tuple[str, ...], str] = {}
    data: dict[str, Any] = {}
    for stack_name, stack_table in _resolve_extends(stacks, chosen, where_file):
        label = f"{where_file} [stacks.{stack_name}]"
        data = _merge(data, stack_table, origins, label)
    env_data, env_origins = _env_layer(env)
    data = _merge(data, env_data, origins, "env")
    origins.update(env_origins)
    if overrides:
        data = _merge(data, overrides, origins, "argument")
    data.pop("extends", None)
    data["name"] = chosen
    data = _split_lists(Stack, data)

    try:
        stack = Stack.model_validate(data)
    except ValidationError as exc:

        def origin_of(loc: tuple[str, ...]) -> str | None:
            key = tuple(str(p).replace("-", "_") for p in loc)
            while key:
                if key in origins:
                    return origins[key]
                key = key[:-1]
            return None

        message = format_validation_error(
            exc, Stack, where=f"stack {chosen!r} ({where_file})", origin_of=origin_of
        )
        raise ConfigError(message) from None
    stack._origins = origins
    stack._file = path
    return stack


# ----------------------------------------------------------------------------- resolving

_memo: dict[str | None, tuple[tuple[Any, ...], Stack]] = {}


def _fingerprint(stack_file: Path | None) -> tuple[Any, ...]:
    """What the active stack depends on: cwd, ``OXEO_FLOWS_*`` variables, the config file.

    Cheap enough for every call (a few microseconds): the environment is scanned in its raw
    form, and a single ``stat`` sees an edited config file, or (when there is none) a file
    created or removed in the working directory.
    """
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        env = tuple(kv for kv in data.items() if kv[0].startswith(b"OXEO_FLOWS_"))
    else:  # pragma: no cover - non-CPython environ
        env = tuple(kv for kv in os.environ.items() if kv[0].startswith("OXEO_FLOWS_"))
    cwd = os.getcwd()
    try:
        stamp = os.stat(stack_file if stack_file is not None else cwd).st_mtime_ns
    except OSError:
        stamp = None
    return (cwd, env, stamp)


def resolve_stack(stack: Stack | str | None = None) -> Stack:
    """The one resolver behind every ``stack=`` argument of oxeo-flows.

    A `Stack` is returned as is; a name (or None, the active stack) is loaded with
    `load_stack` and remembered until the working directory, an ``OXEO_FLOWS_*`` variable or
    the configuration file changes.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The stack.

    Raises:
        ConfigError: ``stack`` is of another type, or the stack does not load.

    Example:
        ```python
        from oxeo_flows import resolve_stack

        assert resolve_stack("local").name == "local"
        ```
    """
    if isinstance(stack, Stack):
        return stack
    if stack is not None and not isinstance(stack, str):
        msg = f"stack must be a Stack, a stack name or None, got {type(stack).__name__}"
        raise ConfigError(msg)
    memo = _memo.get(stack)
    if memo is not None and memo[0] == _fingerprint(memo[1].file):
        return memo[1]
    loaded = load_stack(stack)
    _memo[stack] = (_fingerprint(loaded.file), loaded)
    return loaded


def forget_stacks() -> None:
    """Forget the stacks `resolve_stack` remembered (they are re-read on next use)."""
    _memo.clear()
