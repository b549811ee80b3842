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
import warnings
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from oxeo_flows._model import Model, format_validation_error, kebab
from oxeo_flows._redact import is_loaded_secret
from oxeo_flows.errors import BlockError, ConfigError
from oxeo_flows.network import GcpNetwork, check_region

if TYPE_CHECKING:
    from oxeo_flows.pools import PoolResult
    from oxeo_flows.stack import Stack, VertexSection

__all__ = ["ENTRYPOINT_MODULE", "VertexJob", "ensure_vertex_pool", "vertex_job"]

#: The module that reads the Prefect API key from Secret Manager, then runs the flow run.
ENTRYPOINT_MODULE = "oxeo_flows.vertex_entrypoint"
_DEFAULT_COMMAND = "prefect flow-run execute"

_VERTEX_NETWORK = re.compile(r"^projects/(?P<project>[^/]+)/global/networks/(?P<name>[^/]+)$")
_DIGITS = re.compile(r"^[0-9]{6,19}$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_RESOURCE = re.compile(
    r"^projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}(/versions/([0-9]+|latest))?$"
)
_SA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,29}@[a-z0-9.-]+\.gserviceaccount\.com$")
_OriginOf = Callable[[tuple[str, ...]], "str | None"]
_build_context: ContextVar[tuple[str, _OriginOf | None] | None] = ContextVar(
    "oxeo_flows_vertex_build", default=None
)
#: GCP allows 64 labels per resource; Prefect adds about a dozen of its own to each job.
MAX_LABELS = 50


def _secret_env_message(key: str, why: str) -> str:
    hint = f"{key}_SECRET" if not key.endswith("_SECRET") else key
    return (
        f"env[{key!r}] {why}. Job variables are stored in Prefect and sent to Vertex AI in plain "
        "text, so secret values must not go there. Pass the secret's NAME instead, e.g. "
        f"env={{{hint!r}: 'my-secret-name'}}, and load it at run time in the flow: "
        f"load_secret(os.environ[{hint!r}])"
    )


class VertexJob(Model):
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

    image: str | None = None
    region: str | None = None
    service_account: str | None = None
    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None
    accelerator_count: int | None = Field(default=None, ge=1, le=16)
    boot_disk_type: Literal["pd-ssd", "pd-standard", "hyperdisk-balanced"] = "pd-ssd"
    boot_disk_size_gb: int = Field(default=100, ge=100, le=64000)
    max_run_time_hours: int = Field(default=24, ge=1)
    network: GcpNetwork | str | None = None
    reserved_ip_ranges: tuple[str, ...] = ()
    scheduling_strategy: Literal["STANDARD", "SPOT", "FLEX_START"] = "STANDARD"
    restart_job_on_worker_restart: bool = False
    max_wait_hours: float | None = Field(default=None, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str | None] = Field(default_factory=dict)
    enable_web_access: bool = False
    enable_dashboard_access: bool = False
    job_watch_poll_interval: float = Field(default=5.0, gt=0)
    api_key_secret: str | None = None
    command: str | None = None

    def __init__(self, **data: Any) -> None:
        # pydantic calls a custom __init__ from model_validate too, so this is the one place
        # where validation errors become ConfigError (with origins when built by vertex_job).
        try:
            super().__init__(**data)
        except ValidationError as exc:
            where, origin_of = _build_context.get() or ("VertexJob(...)", None)
            message = format_validation_error(exc, VertexJob, where=where, origin_of=origin_of)
            raise ConfigError(message) from None

    # ------------------------------------------------------------------ fields

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str:
        if not v or not v.strip():
            msg = (
                "is required: the container image that runs the flow (set vertex.image in the "
                "stack, or pass image=...)"
            )
            raise ValueError(msg)
        if any(c.isspace() for c in v):
            msg = f"{v!r} is not a container image reference (it contains whitespace)"
            raise ValueError(msg)
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str:
        if not v:
            msg = "is required: set vertex.region or gcp.region in the stack, or pass region=..."
            raise ValueError(msg)
        return check_region(v)

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, v: str | None) -> str:
        if not v:
            msg = (
                "is required: Vertex AI runs the job as this service account (and without one "
                "it uses a Google-managed agent that cannot reach your secrets). Set "
                "vertex.service-account or gcp.service-account in the stack, or pass "
                "service_account='NAME@PROJECT.iam.gserviceaccount.com'"
            )
            raise ValueError(msg)
        if not _SA_EMAIL.match(v):
            msg = (
                f"{v!r} is not a service account email "
                "(expected NAME@PROJECT.iam.gserviceaccount.com)"
            )
            raise ValueError(msg)
        return v

    @field_validator("machine_type")
    @classmethod
    def _machine_type(cls, v: str) -> str:
        if not _MACHINE_TYPE.match(v):
            msg = f"{v!r} is not a Compute Engine machine type (e.g. 'n1-standard-4')"
            raise ValueError(msg)
        return v

    @field_validator("accelerator_type")
    @classmethod
    def _accelerator_type(cls, v: str | None) -> str | None:
        if v is not None and not _ACCELERATOR.match(v):
            msg = (
                f"{v!r} is not a Vertex AI accelerator type; use the API's enum name, e.g. "
                "'NVIDIA_TESLA_T4' or 'NVIDIA_L4'"
            )
            raise ValueError(msg)
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

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            msg = (
                f"{len(v)} labels is too many: at most {MAX_LABELS} (GCP allows 64 per job and "
                "Prefect adds about a dozen of its own)"
            )
            raise ValueError(msg)
        for key, value in v.items():
            if not _LABEL_KEY.match(key):
                msg = (
                    f"label key {key!r} is not a valid GCP label key: 1-63 characters, "
                    "lowercase letters, digits, '_' and '-', starting with a lowercase letter"
                )
                raise ValueError(msg)
            if not _LABEL_VALUE.match(value):
                msg = (
                    f"label {key!r} has value {value!r}, not a valid GCP label value: at most "
                    "63 characters, lowercase letters, digits, '_' and '-'"
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

    @field_validator("api_key_secret")
    @classmethod
    def _api_key_secret(cls, v: str | None) -> str | None:
        if v is not None and not _SECRET_RESOURCE.match(v):
            msg = (
                f"{v!r} is not a Secret Manager secret resource: use "
                "projects/<PROJECT>/secrets/<NAME> (optionally /versions/<N|latest>), or give "
                "just the name in the stack's vertex.api-key-secret with gcp.project set"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _together(self) -> VertexJob:
        if self.accelerator_count is not None and self.accelerator_type is None:
            msg = (
                f"accelerator_count is {self.accelerator_count} but accelerator_type is not "
                "set; give both (e.g. accelerator_type='NVIDIA_TESLA_T4')"
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
        if self.max_wait_hours is not None and self.scheduling_strategy != "FLEX_START":
            msg = (
                f"max_wait_hours is set but scheduling_strategy is {self.scheduling_strategy!r}; "
                "it only applies to FLEX_START"
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


# ----------------------------------------------------------------------------- from a stack


def _section_and_path(stack: Stack, pool: str | None) -> tuple[VertexSection, tuple[str, ...]]:
    from oxeo_flows.stack import VertexPoolSection

    if pool is None:
        return stack.vertex, ("vertex",)
    section = stack.pools.get(pool)
    if section is None:
        msg = (
            f"stack {stack.name!r} has no pool {pool!r} under [pools]; defined: "
            f"{', '.join(sorted(stack.pools)) or '(none)'}"
        )
        raise ConfigError(msg)
    if not isinstance(section, VertexPoolSection):
        msg = f"pools.{pool} of stack {stack.name!r} has type {section.type!r}, not 'vertex-ai'"
        raise ConfigError(msg)
    return section, ("pools", pool)


def vertex_job(
    *, stack: Stack | str | None = None, pool: str | None = None, **overrides: Any
) -> VertexJob:
    """Build a `VertexJob` from the active stack's ``vertex`` and ``gcp`` sections.

    ``region``, ``service_account`` fall back from ``vertex`` to ``gcp``; the network and
    reserved IP ranges come from the stack's `GcpNetwork` (``gcp.network`` and friends) unless
    ``vertex.private-network = false``; ``api-key-secret`` given as a bare name is completed
    with ``gcp.project``. Keyword arguments override any field of `VertexJob`.

    Args:
        stack: The stack (default: `load_stack()`).
        pool: Read a ``vertex-ai`` section of ``[pools]`` instead of ``[vertex]``.
        **overrides: `VertexJob` fields, e.g. ``machine_type="n1-highmem-8"``.

    Returns:
        The validated job.

    Raises:
        ConfigError: A missing or invalid value; the message names the key and where it came
            from (stack file, environment variable or argument).

    Example:
        ```python
        from oxeo_flows import vertex_job

        job = vertex_job(machine_type="n1-highmem-8")
        my_flow.deploy("extract", work_pool_name="vertex", job_variables=job.job_variables())
        ```
    """
    from oxeo_flows.stack import resolve_stack

    stack = resolve_stack(stack)
    section, path = _section_and_path(stack, pool)
    gcp = stack.gcp
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def take(field: str, value: Any, *where: tuple[str, ...]) -> None:
        if value is None:
            return
        data[field] = value
        for key_path in where:
            origins[field] = stack.describe(*key_path)
            break

    for field in (
        "image",
        "machine_type",
        "accelerator_type",
        "accelerator_count",
        "boot_disk_type",
        "boot_disk_size_gb",
        "max_run_time_hours",
        "max_wait_hours",
        "scheduling_strategy",
        "restart_job_on_worker_restart",
        "labels",
        "env",
        "enable_web_access",
        "enable_dashboard_access",
        "job_watch_poll_interval",
    ):
        take(field, getattr(section, field), (*path, field))
    if section.region is not None:
        take("region", section.region, (*path, "region"))
    else:
        take("region", gcp.region, ("gcp", "region"))
    if section.service_account is not None:
        take("service_account", section.service_account, (*path, "service_account"))
    else:
        take("service_account", gcp.service_account, ("gcp", "service_account"))

    wants_network = "network" not in overrides
    if wants_network and section.private_network:
        try:
            network = stack.gcp_network()
        except ConfigError as exc:
            msg = f"{exc} ({stack.describe('gcp', 'network')})"
            raise ConfigError(msg) from None
        if network is None:
            msg = (
                f"Vertex jobs of stack {stack.name!r} are private by default, but gcp.network is "
                "not set: set gcp.network, gcp.project, gcp.project-number and "
                "gcp.reserved-ip-ranges (see the 'Vertex AI runs' guide), or opt out with "
                f"{'.'.join(kebab(p) for p in path)}.private-network = false"
            )
            raise ConfigError(msg)
        take("network", network, ("gcp", "network"))
        if network.reserved_ip_ranges:
            take("reserved_ip_ranges", network.reserved_ip_ranges, ("gcp", "reserved_ip_ranges"))
    elif wants_network:
        warnings.warn(
            f"stack {stack.name!r}: {'.'.join(kebab(p) for p in path)}.private-network is false, "
            "so Vertex jobs are not peered with your VPC and cannot reach private addresses "
            "(such as a private Dask scheduler)",
            UserWarning,
            stacklevel=2,
        )

    if section.api_key_secret is not None:
        name = section.api_key_secret
        if not name.startswith("projects/"):
            project = stack.secrets.gcp_project or gcp.project
            if project is None:
                msg = (
                    f"{stack.describe(*path, 'api_key_secret')} is the bare name {name!r}, but "
                    "no project is set to find it in: set gcp.project, or give the full "
                    "projects/<PROJECT>/secrets/<NAME>"
                )
                raise ConfigError(msg)
            name = f"projects/{project}/secrets/{name}"
        take("api_key_secret", name, (*path, "api_key_secret"))

    for key, value in overrides.items():
        data[key] = value
        origins[key] = "argument"

    def origin_of(loc: tuple[str, ...]) -> str | None:
        return origins.get(str(loc[0])) if loc else None

    token = _build_context.set((f"vertex_job() for stack {stack.name!r}", origin_of))
    try:
        return VertexJob(**data)
    finally:
        _build_context.reset(token)


# ----------------------------------------------------------------------------- pool


def _credentials_reference(block_name: str) -> dict[str, Any]:
    """``{"$ref": {"block_document_id": ...}}`` for a saved ``GcpCredentials`` block."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectException

    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                name=block_name, block_type_slug="gcp-credentials"
            )
    except ObjectNotFound:
        msg = (
            f"no GcpCredentials block named {block_name!r} (block type 'gcp-credentials'): save "
            f"one first, e.g. GcpCredentials(service_account_info=...).save({block_name!r}), "
            "or leave credentials_block unset to use the worker's own credentials"
        )
        raise BlockError(msg) from None
    except (httpx.HTTPError, PrefectException) as exc:
        msg = f"could not read the GcpCredentials block {block_name!r}: {exc}"
        raise BlockError(msg) from exc
    return {"$ref": {"block_document_id": str(document.id)}}


def ensure_vertex_pool(
    name: str,
    job: VertexJob | None = None,
    *,
    credentials_block: str | None = None,
    adopt: bool = False,
    dry_run: bool = False,
    description: str | None = None,
    concurrency_limit: int | None = None,
    stack: Stack | str | None = None,
) -> PoolResult:
    """Create or update a ``vertex-ai`` work pool whose job defaults are ``job``'s values.

    The base job template is prefect-gcp's default with each of ``job.job_variables()`` as a
    variable default, plus the credentials as a block reference. An existing pool is merged
    (your edits kept, our defaults overriding; see `oxeo_flows.pools`), and an unchanged pool
    is not written: one read of the pool (plus one of the credentials block, when named).

    Args:
        name: Work pool name.
        job: The job defaults (default: `vertex_job()` from the active stack).
        credentials_block: Name of a saved ``GcpCredentials`` block the worker uses to submit
            jobs. Default: ``vertex.credentials-block`` or ``gcp.credentials-block`` of the
            stack (``stack``, or the active stack when ``job`` is None); without one, the
            worker uses its own Google credentials.
        adopt: Take over an existing pool that oxeo-flows did not create.
        dry_run: Write nothing; report what would change.
        description: Pool description (written when given and different).
        concurrency_limit: Pool concurrency limit (written when given and different).
        stack: The stack for the defaults above (default: `load_stack()` when ``job`` is None).

    Returns:
        The `PoolResult`: ``created``, ``updated`` or ``unchanged``, with the changes.

    Raises:
        ConfigError: The job or stack is invalid.
        BlockError: The credentials block does not exist.
        PoolError: The pool exists unmanaged (pass ``adopt=True``), has another type, or the
            Prefect API failed.

    Example:
        ```python
        from oxeo_flows import ensure_vertex_pool

        result = ensure_vertex_pool("prod-vertex", credentials_block="vertex-submitter")
        print(result.action)   # "created", then "unchanged"
        ```
    """
    from oxeo_flows.pools import ensure_pool
    from oxeo_flows.stack import resolve_stack

    if job is None or stack is not None:
        stack = resolve_stack(stack)
    if job is None:
        job = vertex_job(stack=stack)
    if credentials_block is None and stack is not None:
        credentials_block = stack.vertex.credentials_block or stack.gcp.credentials_block
    defaults: dict[str, Any] = dict(job.job_variables())
    if credentials_block is not None:
        defaults["credentials"] = _credentials_reference(credentials_block)
    return ensure_pool(
        name,
        type="vertex-ai",
        defaults=defaults,
        description=description,
        concurrency_limit=concurrency_limit,
        adopt=adopt,
        dry_run=dry_run,
    )
