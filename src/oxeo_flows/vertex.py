"""Flow runs as Vertex AI custom jobs: a validated job spec, its job variables, and its pool.

`VertexJob` is a pure spec (no I/O, no SDK import) that validates everything Vertex would
otherwise reject minutes later, or silently get wrong: the network path (by project *number*),
reserved ranges without a network, accelerators, labels, scheduling, a run-time limit (24 h by
default here; Prefect's own default is 1 h), and secret values in ``env``.

`vertex_job` builds one from the active stack (``[vertex]`` and ``[gcp]``, or a ``vertex-ai``
pool section), `VertexJob.job_variables` renders exactly the variables a ``vertex-ai`` work pool
declares, and `ensure_vertex_pool` creates or updates such a pool idempotently (through
`oxeo_flows.pools.ensure_pool`).

The Prefect API key: a worker copies its own ``PREFECT_API_KEY`` into the job's
``container_spec.env`` in plain text (Vertex cannot mount secrets as environment variables).
With ``api_key_secret`` set, the job variables set ``PREFECT_API_KEY`` to null (Prefect drops
null variables from the job environment) and wrap the container command in
``python -m oxeo_flows.vertex_entrypoint``, which reads the key from Secret Manager with the
job's service account and then runs the real command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from oxeo_flows._checks import ImageRef
from oxeo_flows._model import Model, format_validation_error
from oxeo_flows._redact import is_loaded_secret
from oxeo_flows.errors import ConfigError
from oxeo_flows.network import GcpLabels, GcpNetwork, Region, ServiceAccountEmail

__all__ = [
    "ENTRYPOINT_MODULE",
    "MAX_LABELS",
    "AcceleratorType",
    "MachineType",
    "VertexFields",
    "VertexJob",
    "check_accelerator_type",
    "check_machine_type",
    "machine_check",
]

#: The module that reads the Prefect API key from Secret Manager, then runs the flow run.
ENTRYPOINT_MODULE = "oxeo_flows.vertex_entrypoint"
_DEFAULT_COMMAND = "prefect flow-run execute"

_VERTEX_NETWORK = re.compile(r"^projects/(?P<project>[^/]+)/global/networks/(?P<name>[^/]+)$")
_DIGITS = re.compile(r"^[0-9]{6,19}$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_RESOURCE = re.compile(
    r"^projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}(/versions/([0-9]+|latest))?$"
)
_PERSISTENT_RESOURCE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_NETWORK_ATTACHMENT = re.compile(
    r"^projects/[^/]+/regions/[a-z]+-[a-z]+[0-9]+/networkAttachments/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
)
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_REQUIRED = {
    "image": (
        "is required: the container image that runs the flow (set vertex.image in the stack, "
        "or pass image=...)"
    ),
    "region": "is required: set vertex.region or gcp.region in the stack, or pass region=...",
    "service_account": (
        "is required: Vertex AI runs the job as this service account (and without one it uses "
        "a Google-managed agent that cannot reach your secrets). Set vertex.service-account or "
        "gcp.service-account in the stack, or pass "
        "service_account='NAME@PROJECT.iam.gserviceaccount.com'"
    ),
}
_OriginOf = Callable[[tuple[str, ...]], "str | None"]
_build_context: ContextVar[tuple[str, _OriginOf | None] | None] = ContextVar(
    "oxeo_flows_vertex_build", default=None
)
#: GCP allows 64 labels per resource; Prefect adds about a dozen of its own to each job.
MAX_LABELS = 50


def check_machine_type(value: str) -> str:
    """Validate a Compute Engine machine type name (``n1-standard-4``)."""
    if not _MACHINE_TYPE.match(value):
        msg = f"{value!r} is not a Compute Engine machine type (e.g. 'n1-standard-4')"
        raise ValueError(msg)
    return value


def check_accelerator_type(value: str) -> str:
    """Validate a Vertex AI accelerator type enum name (``NVIDIA_TESLA_T4``)."""
    if not _ACCELERATOR.match(value):
        msg = (
            f"{value!r} is not a Vertex AI accelerator type; use the API's enum name, e.g. "
            "'NVIDIA_TESLA_T4' or 'NVIDIA_L4'"
        )
        raise ValueError(msg)
    return value


MachineType = Annotated[str, AfterValidator(check_machine_type)]
"""A Compute Engine machine type, validated by `check_machine_type`."""
AcceleratorType = Annotated[str, AfterValidator(check_accelerator_type)]
"""A Vertex AI accelerator type, validated by `check_accelerator_type`."""


def machine_check(
    keys: str,
    machine_type: str,
    accelerator_type: str | None,
    accelerator_count: int | None,
    *,
    platform: Literal["vertex", "gce"],
) -> None:
    """`oxeo_flows.machines.check_machine`, its message prefixed with the keys it concerns."""
    from oxeo_flows.machines import check_machine

    try:
        check_machine(machine_type, accelerator_type, accelerator_count, platform=platform)
    except ValueError as exc:
        msg = f"{keys}: {exc}"
        raise ValueError(msg) from None


def _secret_env_message(key: str, why: str) -> str:
    hint = f"{key}_SECRET" if not key.endswith("_SECRET") else key
    return (
        f"env[{key!r}] {why}. Job variables are stored in Prefect and sent to Vertex AI in plain "
        "text, so secret values must not go there. Pass the secret's NAME instead, e.g. "
        f"env={{{hint!r}: 'my-secret-name'}}, and load it at run time in the flow: "
        f"load_secret(os.environ[{hint!r}])"
    )


class VertexFields(Model):
    """The settings of a Vertex AI job, all optional, with their checks.

    The one field set shared by `VertexJob` (the spec) and the stack's ``[vertex]`` and
    ``[pools.<name>]`` (``type = "vertex-ai"``) sections, so a value the stack accepts is one the
    spec accepts. See `VertexJob` for what each field means.
    """

    image: ImageRef | None = None
    """Container image of the flow run job."""
    region: Region | None = None
    """Region of the job (default: `gcp.region`)."""
    service_account: ServiceAccountEmail | None = None
    """Service account of the job (default: `gcp.service-account`)."""
    machine_type: MachineType = "n1-standard-4"
    """Machine type, e.g. `n1-highmem-8`."""
    accelerator_type: AcceleratorType | None = None
    """GPU type, e.g. `NVIDIA_TESLA_T4` (with `accelerator-count`)."""
    accelerator_count: int | None = Field(default=None, ge=1, le=16)
    """Number of GPUs (with `accelerator-type`)."""
    boot_disk_type: Literal["pd-ssd", "pd-standard", "hyperdisk-balanced"] = "pd-ssd"
    """`pd-ssd`, `pd-standard` or `hyperdisk-balanced`."""
    boot_disk_size_gb: int = Field(default=100, ge=100, le=64000)
    """Boot disk size in GB (100 to 64000)."""
    max_run_time_hours: int = Field(default=24, ge=1)
    """Maximum run time in whole hours; Prefect's own default is a silent 1 hour."""
    scheduling_strategy: Literal["STANDARD", "SPOT", "FLEX_START"] = "STANDARD"
    """`STANDARD`, `SPOT` or `FLEX_START`."""
    restart_job_on_worker_restart: bool = False
    """Restart the job when its VM is restarted."""
    max_wait_hours: float | None = Field(default=None, gt=0)
    """Maximum time a job may wait for resources (FLEX_START only)."""
    labels: GcpLabels = Field(default_factory=dict)
    """GCP labels on the job (lowercase keys and values, at most 63 characters)."""
    env: dict[str, str | None] = Field(default_factory=dict)
    """Environment of the job; never secret values (load secrets by name at run time)."""
    enable_web_access: bool = False
    """Interactive shell access to the job."""
    enable_dashboard_access: bool = False
    """Dashboard access to the job."""
    job_watch_poll_interval: float = Field(default=5.0, gt=0)
    """Seconds between job state polls by the worker."""
    api_key_secret: str | None = None
    """Secret Manager secret holding the Prefect API key, read by the job at start (a bare name
    is completed with `gcp.project`)."""
    command: str | None = None
    """Container command (default: Prefect's `prefect flow-run execute`)."""
    persistent_resource_id: str | None = None
    """Run on this Vertex AI persistent resource (warm machines: no VM boot per run)."""
    psc_network_attachment: str | None = None
    """Private Service Connect interface instead of VPC peering: the network attachment
    (`projects/<P>/regions/<R>/networkAttachments/<NAME>`, or the bare name)."""

    @field_validator("persistent_resource_id")
    @classmethod
    def _persistent_resource(cls, v: str | None) -> str | None:
        if v is not None and not _PERSISTENT_RESOURCE.match(v):
            msg = (
                f"{v!r} is not a persistent resource id: 1-63 lowercase letters, digits and "
                "hyphens, starting with a letter (gcloud ai persistent-resources list)"
            )
            raise ValueError(msg)
        return v

    @field_validator("psc_network_attachment")
    @classmethod
    def _attachment(cls, v: str | None) -> str | None:
        if v is not None and not (_NETWORK_ATTACHMENT.match(v) or _PERSISTENT_RESOURCE.match(v)):
            msg = (
                f"{v!r} is not a network attachment: give "
                "projects/<PROJECT>/regions/<REGION>/networkAttachments/<NAME>, or the bare name"
            )
            raise ValueError(msg)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            msg = (
                f"{len(v)} labels is too many: at most {MAX_LABELS} (GCP allows 64 per job and "
                "Prefect adds about a dozen of its own)"
            )
            raise ValueError(msg)
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        from pydantic import SecretBytes, SecretStr

        for key, value in v.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                msg = f"env name {key!r} is not a valid environment variable name"
                raise ValueError(msg)
            if isinstance(value, SecretStr | SecretBytes):
                raise ValueError(_secret_env_message(key, "is a SecretStr"))
            if isinstance(value, str) and is_loaded_secret(value):
                raise ValueError(_secret_env_message(key, "holds a value loaded with load_secret"))
            if key == "PREFECT_API_KEY" and value is not None:
                msg = (
                    "env['PREFECT_API_KEY'] must not be set here: it would be stored in the job "
                    "spec in plain text. Set api_key_secret (vertex.api-key-secret) to the "
                    "Secret Manager secret holding the key; the job reads it at start"
                )
                raise ValueError(msg)
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            msg = (
                "is empty: the container would run nothing; leave command out for Prefect's "
                "default (prefect flow-run execute), or give the command to run"
            )
            raise ValueError(msg)
        return v

    @field_validator("api_key_secret")
    @classmethod
    def _api_key_secret(cls, v: str | None) -> str | None:
        if v is not None and not (_SECRET_RESOURCE.match(v) or _SECRET_NAME.match(v)):
            msg = (
                f"{v!r} is not a Secret Manager secret resource: use "
                "projects/<PROJECT>/secrets/<NAME> (optionally /versions/<N|latest>), or give "
                "just the name in the stack's vertex.api-key-secret with gcp.project set"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _together(self) -> VertexFields:
        if self.accelerator_count is not None and self.accelerator_type is None:
            msg = (
                f"accelerator_count is {self.accelerator_count} but accelerator_type is not "
                "set; give both (e.g. accelerator_type='NVIDIA_TESLA_T4')"
            )
            raise ValueError(msg)
        if self.max_wait_hours is not None and self.scheduling_strategy != "FLEX_START":
            msg = (
                f"max_wait_hours is set but scheduling_strategy is {self.scheduling_strategy!r}; "
                "it only applies to FLEX_START"
            )
            raise ValueError(msg)
        machine_check(
            "machine-type / accelerator-type / accelerator-count",
            self.machine_type,
            self.accelerator_type,
            self.accelerator_count,
            platform="vertex",
        )
        return self


class VertexJob(VertexFields):
    """A Vertex AI custom job for one flow run: validated, frozen, and free of I/O.

    Build one from the stack with `vertex_job`, or directly. Invalid values raise `ConfigError`
    naming the field.

    Attributes:
        image: Container image with your flow's dependencies (and oxeo-flows).
        region: Vertex AI region, e.g. ``europe-west4``.
        service_account: Email of the service account the job runs as (required; the worker
            needs ``iam.serviceAccounts.actAs`` on it).
        machine_type: Compute Engine machine type, e.g. ``n1-standard-4``.
        accelerator_type: GPU/TPU type, e.g. ``NVIDIA_TESLA_T4`` (count defaults to 1).
        accelerator_count: Number of accelerators; needs ``accelerator_type``.
        boot_disk_type: ``pd-ssd``, ``pd-standard`` or ``hyperdisk-balanced``.
        boot_disk_size_gb: Boot disk size, 100 to 64000 GB.
        max_run_time_hours: Hard limit on the job's run time (``scheduling.timeout``), and how
            long the worker watches it. Whole hours, at least 1; 24 by default.
        network: The peered VPC: a `GcpNetwork` or ``projects/<NUMBER>/global/networks/<NAME>``.
        reserved_ip_ranges: Private-services-access ranges to place the job in (needs network).
        scheduling_strategy: ``STANDARD`` (on demand), ``SPOT`` or ``FLEX_START``.
        restart_job_on_worker_restart: Restart the job if its VM restarts.
        max_wait_hours: With ``FLEX_START``, how long to wait for resources.
        labels: GCP labels (lowercase keys and values, at most 63 characters).
        env: Extra environment variables; never secret values (pass secret names). A value of
            None removes a variable the worker would add.
        enable_web_access: Interactive shell access to the job's container.
        enable_dashboard_access: Access to a dashboard served by the container.
        job_watch_poll_interval: Seconds between the worker's job state polls.
        api_key_secret: Secret Manager secret (``projects/<P>/secrets/<NAME>``) holding the
            Prefect API key; see the module docstring.
        command: Container command; by default Prefect's ``prefect flow-run execute``.

    Example:
        ```python
        from oxeo_flows import GcpNetwork, VertexJob

        job = VertexJob(
            image="europe-docker.pkg.dev/oxeo-main/flows/extract:1",
            region="europe-west4",
            service_account="prefect@oxeo-main.iam.gserviceaccount.com",
            network=GcpNetwork(project="oxeo-main", project_number="123456789012",
                               network="dask", region="europe-west4"),
            reserved_ip_ranges=["vertex-peering"],
        )
        variables = job.job_variables()   # for flow.deploy(job_variables=...)
        ```
    """

    network: GcpNetwork | str | None = None
    reserved_ip_ranges: tuple[str, ...] = ()

    def __init__(self, **data: Any) -> None:
        # pydantic calls a custom __init__ from model_validate too, so this is the one place
        # where validation errors become ConfigError (with origins when built by vertex_job).
        try:
            super().__init__(**data)
        except ValidationError as exc:
            where, origin_of = _build_context.get() or ("VertexJob(...)", None)
            message = format_validation_error(exc, VertexJob, where=where, origin_of=origin_of)
            raise ConfigError(message) from None

    @classmethod
    def build(
        cls, data: Mapping[str, Any], *, where: str, origin_of: _OriginOf | None = None
    ) -> VertexJob:
        """Build a job from ``data``; errors name ``where`` and each value's origin.

        Args:
            data: Field values.
            where: What is being built, e.g. ``"vertex_job() for stack 'prod'"``.
            origin_of: Where the value at a key came from (a stack key, "argument").

        Returns:
            The validated job.

        Raises:
            ConfigError: One line per invalid or missing value.
        """
        token = _build_context.set((where, origin_of))
        try:
            return cls(**data)
        finally:
            _build_context.reset(token)

    # ------------------------------------------------------------------ fields

    @field_validator("image", "region", "service_account")
    @classmethod
    def _required(cls, v: str | None, info: ValidationInfo) -> str:
        if not v:
            raise ValueError(_REQUIRED[info.field_name or ""])
        return v

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, v: Any) -> Any:
        if isinstance(v, GcpNetwork):
            v.vertex_network  # noqa: B018 - raises ConfigError when the number is missing
            return v
        if isinstance(v, Mapping):
            return GcpNetwork.model_validate(dict(v))
        if v is None or not isinstance(v, str):
            return v
        m = _VERTEX_NETWORK.match(v)
        if m is None:
            msg = (
                f"{v!r} is not a Vertex AI network: Vertex needs the full path "
                f"projects/<PROJECT NUMBER>/global/networks/{v.rsplit('/', 1)[-1]} "
                "(or set gcp.network, gcp.project and gcp.project-number in the stack)"
            )
            raise ValueError(msg)
        if not _DIGITS.match(m.group("project")):
            msg = (
                f"{v!r} names the project by id ({m.group('project')!r}); Vertex AI needs the "
                "project NUMBER here: projects/<NUMBER>/global/networks/"
                f"{m.group('name')}. Find it with: gcloud projects describe "
                f"{m.group('project')} --format='value(projectNumber)'"
            )
            raise ValueError(msg)
        from oxeo_flows.network import check_gcp_name

        check_gcp_name(m.group("name"), "network")
        return v

    @field_validator("reserved_ip_ranges")
    @classmethod
    def _ranges(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from oxeo_flows.network import check_gcp_name

        for name in v:
            check_gcp_name(name, "reserved IP range")
        if len(set(v)) != len(v):
            msg = f"reserved IP ranges must not repeat: {list(v)}"
            raise ValueError(msg)
        return v

    @field_validator("api_key_secret")
    @classmethod
    def _api_key_resource(cls, v: str | None) -> str | None:
        if v is not None and not _SECRET_RESOURCE.match(v):
            msg = (
                f"{v!r} is not a Secret Manager secret resource: use "
                "projects/<PROJECT>/secrets/<NAME> (optionally /versions/<N|latest>); the stack's "
                "vertex.api-key-secret may give just the name when gcp.project is set"
            )
            raise ValueError(msg)
        return v

    @field_validator("psc_network_attachment")
    @classmethod
    def _attachment_path(cls, v: str | None) -> str | None:
        if v is not None and not _NETWORK_ATTACHMENT.match(v):
            msg = (
                f"{v!r}: the job needs the full network attachment path "
                "projects/<PROJECT>/regions/<REGION>/networkAttachments/<NAME> (the stack "
                "completes a bare name with gcp.project and the region)"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _with_network(self) -> VertexJob:
        if self.psc_network_attachment is not None and self.network is not None:
            msg = (
                "psc_network_attachment and network are both set: a job reaches your VPC either "
                "through a Private Service Connect interface or through VPC peering; keep one "
                "(with the stack, set vertex.private-network = false for PSC)"
            )
            raise ValueError(msg)
        if self.reserved_ip_ranges and self.network is None:
            msg = (
                f"reserved_ip_ranges {list(self.reserved_ip_ranges)} are set without a network; "
                "reserved ranges belong to the peered network (set gcp.network)"
            )
            raise ValueError(msg)
        if (
            isinstance(self.network, GcpNetwork)
            and self.network.region
            and self.region
            and self.network.region != self.region
        ):
            msg = (
                f"region {self.region!r} differs from the network's region "
                f"{self.network.region!r} (gcp.region): run Vertex jobs in the region of the "
                "subnetwork they must reach, or set vertex.region to match"
            )
            raise ValueError(msg)
        return self

    # ------------------------------------------------------------------ rendering

    @property
    def network_path(self) -> str | None:
        """The network as Vertex wants it (``projects/<NUMBER>/global/networks/<NAME>``)."""
        if isinstance(self.network, GcpNetwork):
            return self.network.vertex_network
        return self.network

    @property
    def container_command(self) -> str | None:
        """The container command; wrapped by the API-key entrypoint with ``api_key_secret``."""
        if self.api_key_secret is None:
            return self.command
        inner = self.command or _DEFAULT_COMMAND
        return (
            f"python -m {ENTRYPOINT_MODULE} --api-key-secret {shlex.quote(self.api_key_secret)} "
            f"-- {inner}"
        )

    def scheduling(self) -> dict[str, Any]:
        """The ``scheduling`` job variable (prefect-gcp turns it into a ``Scheduling`` message).

        ``timeout`` is not in it: the worker sets it from ``maximum_run_time_hours``.
        """
        out: dict[str, Any] = {
            "strategy": self.scheduling_strategy,
            "restart_job_on_worker_restart": self.restart_job_on_worker_restart,
        }
        if self.max_wait_hours is not None:
            out["max_wait_duration"] = f"{round(self.max_wait_hours * 3600)}s"
        return out

    def job_spec_extensions(self) -> dict[str, Any]:
        """Job-spec settings prefect-gcp's ``vertex-ai`` pool declares no variable for.

        They go into the pool's ``job_configuration.job_spec`` (see `oxeo_flows.pools`), keyed
        by their dotted path there; prefect-gcp passes them on to ``CustomJobSpec``.

        Returns:
            ``{"job_spec.persistent_resource_id": ..., "job_spec.psc_interface_config": ...}``
            for the settings that are set.
        """
        out: dict[str, Any] = {}
        if self.persistent_resource_id is not None:
            out["job_spec.persistent_resource_id"] = self.persistent_resource_id
        if self.psc_network_attachment is not None:
            out["job_spec.psc_interface_config"] = {
                "network_attachment": self.psc_network_attachment
            }
        return out

    def job_variables(self) -> dict[str, Any]:
        """Job variables for a ``vertex-ai`` work pool, for ``flow.deploy(job_variables=...)``.

        Every key is a variable that prefect-gcp's ``vertex-ai`` pool declares; unset optional
        values are left out (so the pool's defaults apply to them).

        Returns:
            A JSON-ready dict.
        """
        out: dict[str, Any] = {
            "image": self.image,
            "region": self.region,
            "service_account_name": self.service_account,
            "machine_type": self.machine_type,
            "boot_disk_type": self.boot_disk_type,
            "boot_disk_size_gb": self.boot_disk_size_gb,
            "maximum_run_time_hours": self.max_run_time_hours,
            "scheduling": self.scheduling(),
            "enable_web_access": self.enable_web_access,
            "enable_dashboard_access": self.enable_dashboard_access,
            "job_watch_poll_interval": self.job_watch_poll_interval,
        }
        if self.accelerator_type is not None:
            out["accelerator_type"] = self.accelerator_type
            out["accelerator_count"] = self.accelerator_count or 1
        if self.network is not None:
            out["network"] = self.network_path
            if self.reserved_ip_ranges:
                out["reserved_ip_ranges"] = list(self.reserved_ip_ranges)
        env: dict[str, str | None] = dict(self.env)
        if self.api_key_secret is not None:
            # Prefect drops null variables from the job's environment: the worker's own
            # PREFECT_API_KEY never reaches the job spec. The entrypoint sets it at start.
            env["PREFECT_API_KEY"] = None
        if env:
            out["env"] = env
        if self.labels:
            out["labels"] = dict(self.labels)
        command = self.container_command
        if command is not None:
            out["command"] = command
        return out
