"""The ``process`` pool kind: flow runs as local processes of a ``prefect worker``.

Its job settings are a ``[pools.<name>]`` section's ``env`` and ``working-dir`` (there is no
stack-wide section for it); its runs see the worker machine's files, so a deployment may run
from a directory there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oxeo_flows.pools._kind import BlockIds, PoolKind, with_stack_env

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["KIND"]


def _build(stack: Stack, pool: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    section = stack.pools.get(pool) if pool is not None else None
    job: dict[str, Any] = {}
    env = dict(getattr(section, "env", None) or {})
    if env:
        job["env"] = env
    working_dir = getattr(section, "working_dir", None)
    if working_dir:
        job["working_dir"] = working_dir
    job.update(overrides)
    return job


def _render(
    job: Mapping[str, Any], stack: Stack, pool: str | None, block_ids: BlockIds
) -> dict[str, Any]:
    return with_stack_env(dict(job), stack)


KIND = PoolKind(
    type="process",
    runner="process",
    section=None,
    extra=None,
    spec_type=dict,
    remote=False,
    build_job=_build,
    render=_render,
)
