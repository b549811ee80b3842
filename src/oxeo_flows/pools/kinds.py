"""Pool kinds: the one registry of the work-pool types a stack can use.

A *kind* is a work-pool type oxeo-flows knows how to fill from a stack: ``process``,
``docker`` and ``vertex-ai``. Each kind (a `PoolKind`) says

- which stack ``runner`` selects it and which stack section holds its job settings;
- how to build its job spec from a stack (`PoolKind.build_job`: `vertex_job`, `docker_job`,
  or the process pool's env and working directory);
- how to render the spec as the pool's job-variable defaults (`PoolKind.render`), block
  references included;
- which oxeo-flows extra installs its worker, and whether its runs can see the files of the
  machine that deployed (``remote``: they cannot, so a deployment needs code storage).

`deploy_flow`, `apply_stack`, ``oxeo-flows vertex ensure-pool`` / ``docker ensure-pool`` and
``doctor`` all go through `pool_defaults` and `ensure_stack_pool`, so from one stack they write
the same base job template.

**The layering rule** (one rule, every kind): a ``[pools.<name>]`` section of type T starts from
the stack's section for T (``[vertex]`` for ``vertex-ai``, ``[docker]`` for ``docker``; a
``process`` pool has none) and every key it sets replaces that key, except the tables ``env``
and ``labels``, which are merged key by key with the pool's entries winning. ``description``,
``concurrency-limit`` and ``adopt`` belong to the pool alone.

Every rendered template also sets ``OXEO_FLOWS_STACK`` in the job environment, so a flow run
started from the pool resolves the stack the pool was made from (`deploy_flow` sets it on the
deployment too, for the stack it deploys from).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oxeo_flows._model import Model
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from oxeo_flows.pools._template import PoolResult
    from oxeo_flows.stack import Stack

__all__ = [
    "POOL_KINDS",
    "STACK_ENV",
    "BlockIds",
    "PoolKind",
    "api_block_ids",
    "ensure_kind_pool",
    "ensure_stack_pool",
    "layered_section",
    "pool_defaults",
    "pool_kind",
    "pool_target",
    "with_stack_env",
]

#: The environment variable that carries the stack name into flow runs.
STACK_ENV = "OXEO_FLOWS_STACK"

#: ``(block type slug, block name) -> block document id``. `api_block_ids` reads the Prefect
#: API; `apply_stack` passes one that also knows the blocks the same apply will create.
BlockIds = Callable[[str, str], str]


@dataclass(frozen=True)
class PoolKind:
    """One work-pool type oxeo-flows fills from a stack.

    Attributes:
        type: The Prefect work-pool type, e.g. ``vertex-ai``.
        runner: The stack ``runner`` value that selects this kind, e.g. ``vertex``.
        section: The stack section holding the job settings (None for ``process``).
        extra: The oxeo-flows extra that installs the worker (None: Prefect itself).
        remote: Flow runs cannot see the deploying machine's files (they need code storage).
        spec_type: The type of the kind's job spec (`VertexJob`, `DockerJob`, dict).
        build_job: ``(stack, pool name or None, overrides) -> spec``.
        render: ``(spec, stack, pool name or None, block ids) -> job-variable defaults``.
        extensions: ``(spec, stack, pool name or None) -> job-configuration extensions``
            (settings the type declares no variable for; see `oxeo_flows.pools.ensure_pool`).
    """

    type: str
    runner: str
    section: str | None
    extra: str | None
    remote: bool
    spec_type: builtins.type[Any]
    build_job: Callable[[Stack, str | None, Mapping[str, Any]], Any]
    render: Callable[[Any, Stack, str | None, BlockIds], dict[str, Any]]
    extensions: Callable[[Any, Stack, str | None], dict[str, Any]] = lambda spec, stack, pool: {}


def _registry() -> dict[str, PoolKind]:
    from oxeo_flows.pools import kind_docker, kind_process, kind_vertex

    kinds = (kind_process.KIND, kind_docker.KIND, kind_vertex.KIND)
    return {kind.type: kind for kind in kinds}


class _Kinds(Mapping[str, PoolKind]):
    """The registry, filled on first use (the kind modules import nothing heavy, but lazily)."""

    _data: dict[str, PoolKind] | None = None

    def _get(self) -> dict[str, PoolKind]:
        if self._data is None:
            self._data = _registry()
        return self._data

    def __getitem__(self, key: str) -> PoolKind:
        return self._get()[key]

    def __iter__(self) -> Any:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


#: Work-pool type -> `PoolKind`.
POOL_KINDS: Mapping[str, PoolKind] = _Kinds()


def pool_kind(type_or_runner: str) -> PoolKind:
    """The kind for a work-pool type (``vertex-ai``) or a stack runner (``vertex``).

    Raises:
        ConfigError: Neither a known type nor a known runner.
    """
    if type_or_runner in POOL_KINDS:
        return POOL_KINDS[type_or_runner]
    for kind in POOL_KINDS.values():
        if kind.runner == type_or_runner:
            return kind
    known = ", ".join(sorted(POOL_KINDS))
    msg = f"unknown work-pool kind {type_or_runner!r}; oxeo-flows manages: {known}"
    raise ConfigError(msg)


def pool_target(stack: Stack, work_pool: str | None = None) -> tuple[str, PoolKind]:
    """The pool a deployment of ``stack`` goes to, and its kind.

    The pool is ``work_pool``, else the runner section's ``work-pool`` (``vertex.work-pool``,
    ``docker.work-pool``), else the stack's ``work-pool``, else ``<stack>-<runner>``. Its kind
    is the ``type`` of ``[pools.<pool>]`` when the stack declares that pool, else the runner's.

    Args:
        stack: The stack.
        work_pool: An explicit pool name.

    Returns:
        ``(pool name, kind)``.
    """
    runner_kind = pool_kind(stack.runner)
    section_pool = (
        getattr(getattr(stack, runner_kind.section), "work_pool", None)
        if runner_kind.section
        else None
    )
    name = work_pool or section_pool or stack.default_work_pool
    declared = stack.pools.get(name)
    return name, (pool_kind(declared.type) if declared is not None else runner_kind)


def layered_section(
    stack: Stack, kind: PoolKind, pool: str | None
) -> tuple[Model, tuple[str, ...]]:
    """The job settings of ``pool`` by the layering rule, and the stack path they come from.

    Args:
        stack: The stack.
        kind: The pool's kind (must have a section).
        pool: A ``[pools.<name>]`` to layer over the kind's section, or None for the section.

    Returns:
        ``(settings, path)``: a model of the kind's section type, and ``("vertex",)`` or
        ``("pools", name)`` for messages.

    Raises:
        ConfigError: ``pool`` is not declared, or is declared with another type.
    """
    assert kind.section is not None
    base: Model = getattr(stack, kind.section)
    if pool is None:
        return base, (kind.section,)
    section = stack.pools.get(pool)
    if section is None:
        msg = (
            f"stack {stack.name!r} has no pool {pool!r} under [pools]; defined: "
            f"{', '.join(sorted(stack.pools)) or '(none)'}"
        )
        raise ConfigError(msg)
    if section.type != kind.type:
        msg = f"pools.{pool} of stack {stack.name!r} has type {section.type!r}, not {kind.type!r}"
        raise ConfigError(msg)
    return stack.pool_settings(pool), ("pools", pool)


def api_block_ids(slug: str, name: str) -> str:
    """Read a block's id from the Prefect API (`oxeo_flows.blocks.block_document_id`)."""
    from oxeo_flows.blocks import block_document_id

    return block_document_id(
        slug, name, hint=f"save it first (e.g. with ensure_block(..., {name!r}))"
    )


def with_stack_env(variables: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """``variables`` with ``OXEO_FLOWS_STACK`` set in its ``env`` (other entries kept)."""
    out = dict(variables)
    out["env"] = {**dict(out.get("env") or {}), STACK_ENV: stack.name}
    return out


def _spec(
    stack: Stack, pool: str, job: Any, kind: PoolKind | None
) -> tuple[PoolKind, str | None, Any]:
    if kind is None:
        _, kind = pool_target(stack, pool)
    declared = pool if pool in stack.pools else None
    if declared is not None and stack.pools[pool].type != kind.type:
        msg = (
            f"pools.{pool} of stack {stack.name!r} has type {stack.pools[pool].type!r}, "
            f"not {kind.type!r}"
        )
        raise ConfigError(msg)
    spec = job if job is not None else kind.build_job(stack, declared, {})
    return kind, declared, spec


def pool_defaults(
    stack: Stack,
    pool: str,
    *,
    job: Any = None,
    kind: PoolKind | None = None,
    block_ids: BlockIds | None = None,
) -> tuple[PoolKind, dict[str, Any]]:
    """The job-variable defaults the stack gives ``pool`` (what its base job template holds).

    Args:
        stack: The stack.
        pool: The pool name (declared under ``[pools]`` or the stack's default pool).
        job: A spec to render instead of the stack's (a `VertexJob`, a `DockerJob`, ...).
        kind: The pool's kind (default: `pool_target`'s).
        block_ids: How block references are resolved (default: `api_block_ids`).

    Returns:
        ``(kind, defaults)``.
    """
    kind, declared, spec = _spec(stack, pool, job, kind)
    return kind, _rendered(kind, spec, stack, pool, declared=declared, block_ids=block_ids)


def _rendered(
    kind: PoolKind,
    spec: Any,
    stack: Stack,
    pool: str,
    *,
    declared: str | None,
    block_ids: BlockIds | None,
) -> dict[str, Any]:
    """The kind's job variables, refused when a value holds a secret loaded in this process."""
    from oxeo_flows._redact import refuse_loaded_secrets

    variables = kind.render(spec, stack, declared, block_ids or api_block_ids)
    refuse_loaded_secrets(variables, where=f"the job variables of work pool {pool!r}")
    return variables


def ensure_stack_pool(
    stack: Stack,
    pool: str,
    *,
    job: Any = None,
    adopt: bool = False,
    dry_run: bool = False,
    description: str | None = None,
    concurrency_limit: int | None = None,
    kind: PoolKind | None = None,
    block_ids: BlockIds | None = None,
) -> PoolResult:
    """Create or update ``pool`` from the stack (`pool_defaults` + `ensure_pool`).

    ``description``, ``concurrency_limit`` and ``adopt`` default to the ``[pools.<name>]``
    section's.

    Args:
        stack: The stack.
        pool: The pool name.
        job: A spec to render instead of the stack's.
        adopt: Take over a pool oxeo-flows did not create.
        dry_run: Read only.
        description: Pool description.
        concurrency_limit: Pool concurrency limit.
        kind: The pool's kind (default: `pool_target`'s).
        block_ids: How block references are resolved (default: `api_block_ids`).

    Returns:
        The `PoolResult`.
    """
    from oxeo_flows.pools._template import ensure_pool

    kind, declared, spec = _spec(stack, pool, job, kind)
    defaults = _rendered(kind, spec, stack, pool, declared=declared, block_ids=block_ids)
    extensions = kind.extensions(spec, stack, declared)
    section = stack.pools.get(pool)
    if section is not None:
        description = section.description if description is None else description
        if concurrency_limit is None:
            concurrency_limit = section.concurrency_limit
        adopt = adopt or section.adopt
    return ensure_pool(
        pool,
        type=kind.type,
        defaults=defaults,
        extensions=extensions,
        description=description,
        concurrency_limit=concurrency_limit,
        adopt=adopt,
        dry_run=dry_run,
    )


def ensure_kind_pool(
    kind: PoolKind,
    name: str | None = None,
    *,
    stack: Stack | str | None = None,
    job: Any = None,
    adopt: bool = False,
    dry_run: bool = False,
    description: str | None = None,
    concurrency_limit: int | None = None,
) -> PoolResult:
    """Ensure the pool ``name`` of ``kind`` from the stack.

    The body of `ensure_vertex_pool`, `ensure_docker_pool` and the ``ensure-pool`` commands.
    ``name`` defaults to the kind section's ``work-pool``, then the stack's default pool.
    """
    from oxeo_flows.stack import resolve_stack

    the_stack = resolve_stack(stack)
    section = getattr(the_stack, kind.section) if kind.section else None
    pool = name or getattr(section, "work_pool", None) or the_stack.default_work_pool
    return ensure_stack_pool(
        the_stack,
        pool,
        job=job,
        adopt=adopt,
        dry_run=dry_run,
        description=description,
        concurrency_limit=concurrency_limit,
        kind=kind,
    )
