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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oxeo_flows.errors import ConfigError
from oxeo_flows.pools._kind import (
    STACK_ENV,
    BlockIds,
    PoolKind,
    api_block_ids,
    ensure_kind_pool,
    ensure_pool_of_kind,
    layered_section,
    rendered,
    spec_for,
    with_stack_env,
)

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
    "ensure_pool_of_kind",
    "ensure_stack_pool",
    "layered_section",
    "pool_defaults",
    "pool_kind",
    "pool_target",
    "with_stack_env",
]


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
    if kind is None:
        _, kind = pool_target(stack, pool)
    declared, spec = spec_for(stack, pool, job, kind)
    return kind, rendered(kind, spec, stack, pool, declared=declared, block_ids=block_ids)


def ensure_stack_pool(
    stack: Stack, pool: str, *, kind: PoolKind | None = None, **options: Any
) -> PoolResult:
    """Create or update ``pool`` from the stack: `ensure_pool_of_kind` with the pool's kind.

    Args:
        stack: The stack.
        pool: The pool name.
        kind: The pool's kind (default: `pool_target`'s).
        **options: ``job``, ``adopt``, ``dry_run``, ``description``, ``concurrency_limit``,
            ``block_ids``, as `ensure_pool_of_kind` takes them.

    Returns:
        The `PoolResult`.
    """
    if kind is None:
        _, kind = pool_target(stack, pool)
    return ensure_pool_of_kind(stack, pool, kind, **options)
