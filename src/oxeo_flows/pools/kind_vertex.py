"""The ``vertex-ai`` pool kind: `vertex_job` from a stack, and `ensure_vertex_pool`.

The one mapping from the stack's ``[vertex]`` section (or a ``vertex-ai`` ``[pools.<name>]``
layered over it) to the `VertexJob` spec: every `VertexFields` field is taken as is; ``region``
and ``service-account`` fall back to ``[gcp]``; the network and reserved ranges come from the
stack's `GcpNetwork`; a bare ``api-key-secret`` name is completed with the project.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oxeo_flows._model import kebab
from oxeo_flows.errors import ConfigError
from oxeo_flows.pools._kind import BlockIds, PoolKind, layered_section, with_stack_env
from oxeo_flows.vertex import VertexFields, VertexJob

if TYPE_CHECKING:
    from oxeo_flows.pools._template import PoolResult
    from oxeo_flows.stack import Stack, VertexSection

__all__ = ["KIND", "credentials_block", "ensure_vertex_pool", "vertex_job"]

#: Block type slug of prefect-gcp's ``GcpCredentials``.
CREDENTIALS_BLOCK_TYPE = "gcp-credentials"


def _api_key_secret(stack: Stack, section: VertexSection, path: tuple[str, ...]) -> str | None:
    name = section.api_key_secret
    if name is None or name.startswith("projects/"):
        return name
    project = stack.secrets.gcp_project or stack.gcp.project
    if project is None:
        msg = (
            f"{stack.describe(*path, 'api_key_secret')} is the bare name {name!r}, but no project "
            "is set to find it in: set gcp.project, or give the full "
            "projects/<PROJECT>/secrets/<NAME>"
        )
        raise ConfigError(msg)
    return f"projects/{project}/secrets/{name}"


def _attachment(stack: Stack, name: str | None, region: str | None) -> str | None:
    """A bare network attachment name, completed with the project and the job's region."""
    if name is None or name.startswith("projects/"):
        return name
    if not stack.gcp.project or not region:
        msg = (
            f"vertex.psc-network-attachment is the bare name {name!r}: set gcp.project and the "
            "region to complete it, or give projects/<P>/regions/<R>/networkAttachments/<NAME>"
        )
        raise ConfigError(msg)
    return f"projects/{stack.gcp.project}/regions/{region}/networkAttachments/{name}"


def _network(stack: Stack, path: tuple[str, ...], private: bool) -> Any:
    dotted = ".".join(kebab(p) for p in path)
    if not private:
        warnings.warn(
            f"stack {stack.name!r}: {dotted}.private-network is false, so Vertex jobs are not "
            "peered with your VPC and cannot reach private addresses (such as a private Dask "
            "scheduler)",
            UserWarning,
            stacklevel=4,
        )
        return None
    try:
        network = stack.gcp_network()
    except ConfigError as exc:
        msg = f"{exc} ({stack.describe('gcp', 'network')})"
        raise ConfigError(msg) from None
    if network is None:
        msg = (
            f"Vertex jobs of stack {stack.name!r} are private by default, but gcp.network is not "
            "set: set gcp.network, gcp.project, gcp.project-number and gcp.reserved-ip-ranges "
            f"(see the 'Vertex AI runs' guide), or opt out with {dotted}.private-network = false"
        )
        raise ConfigError(msg)
    return network


def vertex_job(
    *, stack: Stack | str | None = None, pool: str | None = None, **overrides: Any
) -> VertexJob:
    """Build a `VertexJob` from the active stack's ``vertex`` and ``gcp`` sections.

    ``region``, ``service_account`` fall back from ``vertex`` to ``gcp``; the network and
    reserved IP ranges come from the stack's `GcpNetwork` (``gcp.network`` and friends) unless
    ``vertex.private-network = false``; ``api-key-secret`` given as a bare name is completed
    with ``gcp.project``. With ``pool``, a ``vertex-ai`` section of ``[pools]`` is layered over
    ``[vertex]`` (see `oxeo_flows.pools.kinds`). Keyword arguments override any field.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.
        pool: Layer this ``vertex-ai`` section of ``[pools]`` over ``[vertex]``.
        **overrides: `VertexJob` fields, e.g. ``machine_type="n1-highmem-8"``.

    Returns:
        The validated job.

    Raises:
        ConfigError: A missing or invalid value; the message names the key and where it came
            from (stack file, environment variable or argument).

    Example:
        ```python
        from oxeo_flows import vertex_job

        job = vertex_job(
            stack="local",
            image="europe-docker.pkg.dev/oxeo-main/flows/extract:1",
            region="europe-west4",
            service_account="prefect@oxeo-main.iam.gserviceaccount.com",
            network="projects/123456789012/global/networks/dask",
            machine_type="n1-highmem-8",
        )
        assert job.job_variables()["machine_type"] == "n1-highmem-8"
        ```
    """
    from oxeo_flows.stack import resolve_stack

    _check_override_names(overrides)
    the_stack = resolve_stack(stack)
    section, path = layered_section(the_stack, KIND, pool)
    assert isinstance(section, VertexFields)
    pool_keys = the_stack.pools[pool].model_fields_set if pool in the_stack.pools else set()
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def take(field: str, value: Any, *key_path: str) -> None:
        if value is not None:
            data[field] = value
            origins[field] = the_stack.describe(*key_path)

    def where(field: str) -> tuple[str, ...]:
        return (*path, field) if field in pool_keys or path[0] != "pools" else ("vertex", field)

    for field in VertexFields.model_fields:
        take(field, getattr(section, field), *where(field))
    gcp = the_stack.gcp
    if section.region is None:
        take("region", gcp.region, "gcp", "region")
    if section.service_account is None:
        take("service_account", gcp.service_account, "gcp", "service_account")
    take("api_key_secret", _api_key_secret(the_stack, section, path), *where("api_key_secret"))  # type: ignore[arg-type]
    attachment = _attachment(the_stack, section.psc_network_attachment, data.get("region"))
    take("psc_network_attachment", attachment, *where("psc_network_attachment"))
    if "network" not in overrides and attachment is None:
        network = _network(the_stack, path, section.private_network)  # type: ignore[attr-defined]
        take("network", network, "gcp", "network")
        if network is not None and network.reserved_ip_ranges:
            take("reserved_ip_ranges", network.reserved_ip_ranges, "gcp", "reserved_ip_ranges")
    for key, value in overrides.items():
        data[key] = value
        origins[key] = "argument"

    def origin_of(loc: tuple[str, ...]) -> str | None:
        return origins.get(str(loc[0])) if loc else None

    return VertexJob.build(
        data, where=f"vertex_job() for stack {the_stack.name!r}", origin_of=origin_of
    )


def _check_override_names(overrides: Mapping[str, Any]) -> None:
    """Name a misspelt keyword before the stack's checks (e.g. the private network) run."""
    import difflib

    valid = sorted(VertexJob.model_fields)
    for key in overrides:
        if key in VertexJob.model_fields:
            continue
        close = difflib.get_close_matches(str(key).replace("-", "_"), valid, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "remove it"
        msg = (
            f"vertex_job() got an unknown argument {key!r} ({hint}); VertexJob fields are: "
            f"{', '.join(valid)}"
        )
        raise ConfigError(msg)


def credentials_block(stack: Stack, pool: str | None) -> str | None:
    """The ``GcpCredentials`` block a pool's worker submits jobs with, by the layering rule."""
    section, _ = layered_section(stack, KIND, pool)
    return getattr(section, "credentials_block", None) or stack.gcp.credentials_block


def _render(job: VertexJob, stack: Stack, pool: str | None, block_ids: BlockIds) -> dict[str, Any]:
    out = with_stack_env(job.job_variables(), stack)
    name = credentials_block(stack, pool)
    if name is not None:
        from oxeo_flows.blocks import block_reference

        out["credentials"] = block_reference(block_ids(CREDENTIALS_BLOCK_TYPE, name))
    return out


def _build(stack: Stack, pool: str | None, overrides: Mapping[str, Any]) -> VertexJob:
    return vertex_job(stack=stack, pool=pool, **overrides)


def dask_worker_pool_spec(job: VertexJob, stack: Stack) -> dict[str, Any]:
    """The job's second worker pool: ``dask.vertex.worker-count`` replicas running Dask workers.

    prefect-gcp writes the flow run's environment and command into the first worker pool spec
    only; this one is literal (plus the flow's ``{{ image }}``): its command runs
    ``python -m oxeo_flows.vertex_worker`` with the non-secret settings the workers need. The
    TLS material travels in a per-job Secret Manager secret, never in the job spec.
    """
    settings = stack.dask.vertex
    machine: dict[str, Any] = {"machine_type": settings.worker_machine_type or job.machine_type}
    if settings.worker_accelerator_type is not None:
        machine["accelerator_type"] = settings.worker_accelerator_type
        machine["accelerator_count"] = settings.worker_accelerator_count or 1
    project = stack.secrets.gcp_project or stack.gcp.project
    if not project:
        msg = (
            f"dask.backend 'vertex' keeps each job's TLS material in Secret Manager, but stack "
            f"{stack.name!r} sets no project for it: set gcp.project (or secrets.gcp-project)"
        )
        raise ConfigError(msg)
    timeout = stack.dask.start_timeout or 600.0
    command = [
        "python",
        "-m",
        "oxeo_flows.vertex_worker",
        "--project",
        project,
        "--port",
        str(settings.scheduler_port),
        "--timeout",
        f"{timeout:g}",
    ]
    endpoint = stack.gcp.endpoints.secret_manager
    if endpoint:
        command += ["--secret-manager-endpoint", endpoint]
    return {
        "replica_count": settings.worker_count,
        "machine_spec": machine,
        "disk_spec": {
            "boot_disk_type": job.boot_disk_type,
            "boot_disk_size_gb": settings.worker_disk_size_gb,
        },
        "container_spec": {
            "image_uri": settings.worker_image or "{{ image }}",
            "command": command,
            "args": [],
            "env": [{"name": "OXEO_FLOWS_STACK", "value": stack.name}],
        },
    }


def _extensions(job: VertexJob, stack: Stack, pool: str | None) -> dict[str, Any]:
    out = job.job_spec_extensions()
    if stack.dask.backend == "vertex":
        out["job_spec.worker_pool_specs.1"] = dask_worker_pool_spec(job, stack)
    return out


KIND = PoolKind(
    type="vertex-ai",
    runner="vertex",
    section="vertex",
    extra="gcp",
    spec_type=VertexJob,
    remote=True,
    build_job=_build,
    render=_render,
    extensions=_extensions,
)


def ensure_vertex_pool(
    name: str | None = None,
    job: VertexJob | None = None,
    *,
    adopt: bool = False,
    dry_run: bool = False,
    description: str | None = None,
    concurrency_limit: int | None = None,
    stack: Stack | str | None = None,
) -> PoolResult:
    """Create or update a ``vertex-ai`` work pool from the stack (idempotent).

    The base job template is prefect-gcp's default with the stack's job settings as variable
    defaults, the credentials block (``credentials-block`` of the pool, ``vertex`` or ``gcp``)
    as a block reference, and ``OXEO_FLOWS_STACK`` in the job environment: exactly what
    ``oxeo-flows apply`` and `deploy_flow` write for the same pool. An existing pool is merged
    (your edits kept, our defaults overriding; see `oxeo_flows.pools`), and an unchanged pool is
    not written.

    Args:
        name: Work pool name (default: ``vertex.work-pool``, then the stack's default pool).
        job: Job defaults to write instead of the stack's (a `VertexJob`).
        adopt: Take over an existing pool that oxeo-flows did not create.
        dry_run: Write nothing; report what would change.
        description: Pool description (default: the ``[pools.<name>]`` one).
        concurrency_limit: Pool concurrency limit (default: the ``[pools.<name>]`` one).
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The `PoolResult`: ``created``, ``updated`` or ``unchanged``, with the changes.

    Raises:
        ConfigError: The job or stack is invalid, or the pool is declared with another type.
        BlockError: The credentials block does not exist.
        PoolError: The pool exists unmanaged (pass ``adopt=True``), has another type, or the
            Prefect API failed.

    Example:
        ```python
        from oxeo_flows import ensure_vertex_pool

        result = ensure_vertex_pool("prod-vertex", stack="prod")
        print(result.action)   # "created", then "unchanged"
        ```
    """
    from oxeo_flows.pools._kind import ensure_kind_pool

    return ensure_kind_pool(
        KIND,
        name,
        stack=stack,
        job=job,
        adopt=adopt,
        dry_run=dry_run,
        description=description,
        concurrency_limit=concurrency_limit,
    )
