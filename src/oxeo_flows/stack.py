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
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from oxeo_flows._model import Model, format_validation_error, kebab
from oxeo_flows.errors import ConfigError
from oxeo_flows.network import (
    AwsNetwork,
    GcpNetwork,
    check_gcp_name,
    check_project_id,
    check_project_number,
    check_region,
    check_zone,
)

__all__ = [
    "AwsSection",
    "DaskEc2Section",
    "DaskGcpSection",
    "DaskSection",
    "DaskTlsSection",
    "DockerPoolSection",
    "DockerSection",
    "GcpEndpoints",
    "GcpSection",
    "ProcessPoolSection",
    "SecretsSection",
    "Stack",
    "StorageSection",
    "VertexPoolSection",
    "VertexSection",
    "find_config_file",
    "load_stack",
]

ENV_PREFIX = "OXEO_FLOWS_"
#: Environment variables with the prefix that are not stack keys.
RESERVED_ENV = frozenset({"OXEO_FLOWS_STACK", "OXEO_FLOWS_CONFIG"})
LOCAL = "local"
_FREEFORM = frozenset({"labels", "env", "variables", "parameters", "tags", "pools"})


# ----------------------------------------------------------------------------- sections


class GcpEndpoints(Model):
    """API endpoint overrides (private endpoints, emulators). A loopback endpoint is dialed in
    plaintext with anonymous credentials; anything else with TLS and normal credentials."""

    secret_manager: str | None = None
    aiplatform: str | None = None
    compute: str | None = None
    service_networking: str | None = None


class GcpSection(Model):
    """``[gcp]``: the Google Cloud project and its private network."""

    project: str | None = None
    project_number: str | None = None
    region: str | None = None
    zone: str | None = None
    network: str | None = None
    subnetwork: str | None = None
    host_project: str | None = None
    host_project_number: str | None = None
    reserved_ip_ranges: tuple[str, ...] = ()
    service_account: str | None = None
    credentials_block: str | None = None
    endpoints: GcpEndpoints = GcpEndpoints()

    @field_validator("project", "host_project")
    @classmethod
    def _project(cls, v: str | None) -> str | None:
        return None if v is None else check_project_id(v)

    @field_validator("project_number", "host_project_number", mode="before")
    @classmethod
    def _number(cls, v: str | int | None) -> str | None:
        return None if v is None else check_project_number(v)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return None if v is None else check_region(v)

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else check_zone(v)

    @field_validator("subnetwork")
    @classmethod
    def _subnetwork(cls, v: str | None) -> str | None:
        return None if v is None else check_gcp_name(v, "subnetwork")

    @field_validator("reserved_ip_ranges")
    @classmethod
    def _ranges(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            check_gcp_name(name, "reserved IP range")
        return v

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, v: str | None) -> str | None:
        if v is not None and ("@" not in v or not v.endswith(".gserviceaccount.com")):
            msg = (
                f"{v!r} is not a service account email "
                "(expected NAME@PROJECT.iam.gserviceaccount.com)"
            )
            raise ValueError(msg)
        return v

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
        return GcpNetwork(
            project=self.project,
            project_number=self.project_number,
            network=self.network,
            subnetwork=self.subnetwork,
            region=self.region,
            reserved_ip_ranges=self.reserved_ip_ranges,
            host_project=self.host_project,
            host_project_number=self.host_project_number,
        )


class AwsSection(Model):
    """``[aws]``: the AWS account, region and VPC."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    assume_role_arn: str | None = None
    vpc: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    credentials_block: str | None = None

    @model_validator(mode="after")
    def _network(self) -> AwsSection:
        if self.region or self.vpc or self.subnets or self.security_groups:
            if not self.region:
                msg = "aws.region is required when a vpc, subnets or security-groups are set"
                raise ValueError(msg)
            self.network_spec()
        return self

    def network_spec(self) -> AwsNetwork | None:
        """The `AwsNetwork` this section describes, or None when no region is set."""
        if not self.region:
            return None
        return AwsNetwork(
            region=self.region,
            vpc=self.vpc,
            subnets=self.subnets,
            security_groups=self.security_groups,
        )


class VertexSection(Model):
    """``[vertex]``: defaults for flow runs as Vertex AI custom jobs."""

    image: str | None = None
    region: str | None = None
    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None
    accelerator_count: int | None = None
    boot_disk_type: str = "pd-ssd"
    boot_disk_size_gb: int = 100
    max_run_time_hours: float = 24.0
    scheduling_strategy: Literal["STANDARD", "SPOT", "FLEX_START"] = "STANDARD"
    restart_job_on_worker_restart: bool = False
    labels: dict[str, str] = {}
    env: dict[str, str] = {}
    enable_web_access: bool = False
    enable_dashboard_access: bool = False
    private_network: bool = True
    service_account: str | None = None
    credentials_block: str | None = None
    job_watch_poll_interval: float = 5.0
    api_key_secret: str | None = None
    work_pool: str | None = None


class DaskTlsSection(Model):
    """``[dask.tls]``: TLS material for ``tls://`` schedulers (files or secret names)."""

    enabled: bool | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ca_secret: str | None = None
    cert_secret: str | None = None
    key_secret: str | None = None


class DaskGcpSection(Model):
    """``[dask.gcp]``: GCE VMs for an ephemeral Dask cluster."""

    zone: str | None = None
    scheduler_machine_type: str = "e2-standard-2"
    worker_machine_type: str = "e2-standard-4"
    preemptible: bool = False
    ngpus: int = 0
    gpu_type: str | None = None
    docker_image: str | None = None
    source_image: str | None = None
    disk_size_gb: int = 50
    disk_type: str = "pd-standard"
    service_account: str | None = None
    public_ip: bool = False
    bootstrap: bool = True
    auto_shutdown: bool = True
    labels: dict[str, str] = {}


class DaskEc2Section(Model):
    """``[dask.ec2]``: EC2 instances for an ephemeral Dask cluster."""

    ami: str | None = None
    scheduler_instance_type: str = "t3.medium"
    worker_instance_type: str = "t3.large"
    spot: bool = False
    iam_instance_profile: str | None = None
    docker_image: str | None = None
    key_name: str | None = None
    public_ip: bool = False
    volume_size_gb: int | None = None
    bootstrap: bool = True
    tags: dict[str, str] = {}


class DaskSection(Model):
    """``[dask]``: where a flow's tasks run."""

    backend: Literal["local", "address", "gcp", "ec2"] = "local"
    address: str | None = None
    start_timeout: float | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    processes: bool = False
    memory_limit: str | None = None
    adapt: tuple[int, int] | None = None
    parameters: dict[str, str] = {}
    tls: DaskTlsSection = DaskTlsSection()
    gcp: DaskGcpSection = DaskGcpSection()
    ec2: DaskEc2Section = DaskEc2Section()


class StorageSection(Model):
    """``[storage]``: where deployment code is stored (S3)."""

    bucket: str | None = None
    folder: str | None = None
    block_name: str | None = None
    credentials_block: str | None = None
    delete: bool = True
    ignore: tuple[str, ...] = ()
    max_concurrency: int = Field(default=8, ge=1, le=64)


class DockerSection(Model):
    """``[docker]``: defaults for flow runs as Docker containers (``docker`` work pools)."""

    image: str | None = None
    env: dict[str, str] = {}
    extra_pip_packages: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    network_mode: str | None = None
    volumes: tuple[str, ...] = ()
    mem_limit: str | None = None
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] | None = None
    auto_remove: bool = False
    privileged: bool = False
    stream_output: bool = True
    registry_url: str | None = None
    registry_username: str | None = None
    registry_password_secret: str | None = None
    registry_credentials_block: str | None = None
    work_pool: str | None = None


SecretSourceName = Literal["env", "prefect", "gcp", "aws"]


class SecretsSection(Model):
    """``[secrets]``: where `load_secret` looks, in order, and how long it caches."""

    sources: tuple[SecretSourceName, ...] = ("env", "prefect")
    cache_ttl: float = Field(default=300.0, ge=0)
    required: tuple[str, ...] = ()
    gcp_project: str | None = None
    retries: int = Field(default=3, ge=0, le=10)
    env_prefix: str = ""

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            msg = f"secret sources must not repeat: {list(v)}"
            raise ValueError(msg)
        return v


class _PoolCommon(Model):
    description: str | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    adopt: bool = False


class VertexPoolSection(VertexSection, _PoolCommon):
    """``[pools.<name>]`` with ``type = "vertex-ai"``: the pool's job defaults."""

    type: Literal["vertex-ai"]


class DockerPoolSection(DockerSection, _PoolCommon):
    """``[pools.<name>]`` with ``type = "docker"``: the pool's job defaults."""

    type: Literal["docker"]


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
    runner: Literal["process", "docker", "vertex"] = "process"
    work_pool: str | None = None
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
                msg = f"{path}: the table is spelled [tool.oxeo-flows] (with a hyphen), not [tool.oxeo_flows]"
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
            hint = f"did you mean {close[0]!r}?" if close else "stack settings go under stacks.<name>"
            msg = f"{path}: unknown top-level key {key!r} ({hint})"
            raise ConfigError(msg)
    stacks = table.get("stacks", {})
    if not isinstance(stacks, dict) or not all(isinstance(v, dict) for v in stacks.values()):
        msg = f"{path}: 'stacks' must be a table of tables, e.g. [stacks.prod] or [tool.oxeo-flows.stacks.prod]"
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
            msg = f"environment variable {var} has an empty key part; nest with '__' (e.g. OXEO_FLOWS_GCP__REGION)"
            raise ConfigError(msg)
        value: Any = raw
        stripped = raw.strip()
        if stripped[:1] in "[{":
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
            out[name] = _merge(current if isinstance(current, dict) else {}, value, origins, label, here)
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
