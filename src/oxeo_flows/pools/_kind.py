"""What a pool kind is (`PoolKind`) and how a pool of a known kind is filled from a stack.

The kind modules (`kind_process`, `kind_docker`, `kind_vertex`) build on this module; the
registry of kinds, and the functions that find a pool's kind, are in `oxeo_flows.pools.kinds`.
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
    "STACK_ENV",
    "BlockIds",
    "PoolKind",
    "api_block_ids",
    "ensure_kind_pool",
    "ensure_pool_of_kind",
    "layered_section",
    "spec_for",
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


def spec_for(stack: Stack, pool: str, job: Any, kind: PoolKind) -> tuple[str | None, Any]:
    """The pool's ``[pools]`` name (or None) and its job spec: ``job``, or the kind's."""
    declared = pool if pool in stack.pools else None
    if declared is not None and stack.pools[pool].type != kind.type:
        msg = (
            f"pools.{pool} of stack {stack.name!r} has type {stack.pools[pool].type!r}, "
            f"not {kind.type!r}"
        )
        raise ConfigError(msg)
    spec = job if job is not None else kind.build_job(stack, declared, {})
    return declared, spec


def rendered(
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


def ensure_pool_of_kind(
    stack: Stack,
    pool: str,
    kind: PoolKind,
    *,
    job: Any = None,
    adopt: bool = False,
    dry_run: bool = False,
    description: str | None = None,
    concurrency_limit: int | None = None,
    block_ids: BlockIds | None = None,
) -> PoolResult:
    """Create or update ``pool`` of ``kind`` from the stack (its defaults + `ensure_pool`).

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
        kind: The pool's kind.
        block_ids: How block references are resolved (default: `api_block_ids`).

    Returns:
        The `PoolResult`.
    """
    from oxeo_flows.pools._template import ensure_pool

    declared, spec = spec_for(stack, pool, job, kind)
    defaults = rendered(kind, spec, stack, pool, declared=declared, block_ids=block_ids)
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

    if name is not None and (
        not isinstance(name, str) or not name.strip() or any(c in name for c in "/%&<>")
    ):
        msg = (
            f"work pool name {name!r} is invalid: give a non-empty name without '/', '%', '&', "
            "'<' or '>', or leave it out to use the stack's work pool"
        )
        raise ConfigError(msg)
    if job is not None and not isinstance(job, kind.spec_type):
        spec = kind.spec_type.__name__
        helper = f" (build one with oxeo_flows.{spec.removesuffix('Job').lower()}_job(...))"
        msg = (
            f"job for a {kind.type!r} pool must be a {spec}"
            f"{helper if spec.endswith('Job') else ''}, got {type(job).__name__}"
        )
        raise ConfigError(msg)
    the_stack = resolve_stack(stack)
    section = getattr(the_stack, kind.section) if kind.section else None
    pool = name or getattr(section, "work_pool", None) or the_stack.default_work_pool
    return ensure_pool_of_kind(
        the_stack,
        pool,
        kind,
        job=job,
        adopt=adopt,
        dry_run=dry_run,
        description=description,
        concurrency_limit=concurrency_limit,
    )
