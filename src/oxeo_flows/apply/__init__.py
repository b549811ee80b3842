"""Apply a stack: create or update the Prefect objects it declares, idempotently.

`apply_stack` turns the stack's ``pools``, ``storage``, ``docker`` and ``variables`` sections
into Prefect work pools, blocks and variables, in three phases:

1. **Build** (no I/O beyond loading secrets): every pool's job spec is built and validated
   (`vertex_job`, `docker_job`), every block object is built (`s3_bucket`, `aws_credentials`,
   `docker_registry_credentials`), every variable name and value is checked. Any problem, in
   any item, raises one `ConfigError` listing them all, and nothing is written.
2. **Plan** (reads only): each object is compared with what the Prefect API holds. The result
   is an `ApplyPlan` of ``create`` / ``update`` (with a field diff) / ``unchanged`` items. An
   object that exists but that oxeo-flows did not create stops the apply here (`ApplyError`,
   nothing written) unless it is adopted.
3. **Write** (skipped with ``dry_run``): only the items that are not ``unchanged`` are written;
   an unchanged stack makes zero writes. A failure part-way raises `ApplyError` whose ``plan``
   gives each item's `PlanItem.status`: ``applied`` (the API confirmed the write), ``unknown``
   (the write was sent but its answer never came: it may have been committed) or
   ``not applied`` (never sent, or refused). Running apply again is always the fix: it
   re-reads everything, so a committed write shows as ``unchanged``.

Waiting: a Prefect API call that gets no answer is retried, when that is safe, for at most
``timeout`` seconds (default 30) instead of Prefect's two minutes of client retries; the
override is scoped to the apply (see `oxeo_flows.apply._calls`).

What is managed, and how oxeo-flows recognises its own objects (the *marker*):

- **Work pools** (``[pools.<name>]``, types ``vertex-ai``, ``docker``, ``process``): the
  marker is the ``x-oxeo-flows`` key stored in the pool's base job template (see
  `oxeo_flows.pools`).
- **Prefect variables** (``[variables]``): the marker is the variable tag ``oxeo-flows``.
- **Blocks**: the S3 storage block (``storage.bucket``; named ``storage.block-name``, or the
  name `deploy_flow` uses), the AWS credentials block (``storage.credentials-block`` or
  ``aws.credentials-block``) and Docker registry credentials (``docker.registry-credentials-block``
  with ``registry-url`` / ``registry-username``, in ``[docker]`` or a docker pool). Block
  documents cannot carry tags, so each managed block has its own *marker variable*, the
  Prefect variable `block_marker` names (``oxeo_flows_block__<block type>__<name>``, tagged
  ``oxeo-flows``). It is created before the block, and created only if absent (the API answers
  409 to a second create), so two applies running at once, of the same stack or of different
  ones, never undo each other's ownership. The 0.2.0 registry (the variable
  ``oxeo_flows_managed_blocks``) is still read, never written: a block it lists gets its
  marker on the next apply.

Every marker is written in the same request as the object (pools, variables) or before it
(blocks), so an interrupted apply never leaves an object of ours without its marker.

Adopting: an existing object without the marker is only changed when adopted: ``adopt=True``
(``oxeo-flows apply --adopt``) adopts everything; ``adopt = true`` in a ``[pools.<name>]``
section adopts that pool. Adopting writes the marker (even when nothing else differs).
Objects removed from the stack are left in place (apply never deletes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oxeo_flows.apply._calls import DEFAULT_TIMEOUT, ApiCalls, check_timeout, classify
from oxeo_flows.apply._plan import (
    BLOCK_MARKER_PREFIX,
    CONCURRENT_NOTE,
    MANAGED_BLOCKS_VARIABLE,
    MANAGED_TAG,
    UNMANAGED_NOTE,
    ApplyPlan,
    PlanItem,
    action_of,
    block_marker,
    label,
)
from oxeo_flows.errors import ApplyError, ConfigError, OxeoFlowsError

if TYPE_CHECKING:
    from oxeo_flows.apply._build import BlockSpec, PoolSpec
    from oxeo_flows.stack import Stack

__all__ = [
    "BLOCK_MARKER_PREFIX",
    "DEFAULT_TIMEOUT",
    "MANAGED_BLOCKS_VARIABLE",
    "MANAGED_TAG",
    "UNMANAGED_NOTE",
    "ApplyPlan",
    "PlanItem",
    "aapply_stack",
    "apply_stack",
    "block_marker",
]

_PENDING_ID = "(id of the block created by this apply)"


class _BlockIds:
    """Block references for pools: saved ids, or a placeholder for a block this apply creates."""

    def __init__(self, declared: set[tuple[str, str]], *, pending_ok: bool) -> None:
        self.declared = declared
        self.pending_ok = pending_ok

    def __call__(self, slug: str, name: str) -> str:
        from oxeo_flows.errors import BlockNotFoundError
        from oxeo_flows.pools.kinds import api_block_ids

        try:
            return api_block_ids(slug, name)
        except BlockNotFoundError as exc:
            if self.pending_ok and (slug, name) in self.declared:
                return _PENDING_ID
            msg = (
                f"{exc}; this stack does not declare it (for a registry block: set registry-url "
                "and registry-username next to registry-credentials-block)"
            )
            raise ConfigError(msg) from None


def _pool_plan(
    spec: PoolSpec, stack: Stack, *, adopt: bool, block_ids: _BlockIds, dry: bool
) -> Any:
    """Run the pool's ensure (``dry`` = read only); return its PoolResult."""
    from oxeo_flows.pools.kinds import ensure_stack_pool

    return ensure_stack_pool(
        stack, spec.name, job=spec.job, adopt=adopt, dry_run=dry, block_ids=block_ids
    )


def apply_stack(
    stack: Stack | str | None = None,
    *,
    dry_run: bool = False,
    adopt: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> ApplyPlan:
    """Create or update the work pools, blocks and variables a stack declares.

    See the module docstring of `oxeo_flows.apply` for what is managed and how managed objects
    are marked. Everything is validated before the first write; an unchanged stack makes zero
    writes. Safe to run concurrently with another apply (of this stack or another one).

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.
        dry_run: Build and compare only; write nothing (``oxeo-flows apply --dry-run``).
        adopt: Take over existing objects that oxeo-flows did not create.
        timeout: Seconds to keep trying a Prefect API call that gets no answer (the server is
            down or unreachable) before giving up with `ApplyError`. Prefect's own client
            retries are off during the apply (only there), so this bounds the wait.

    Returns:
        The `ApplyPlan`, with each item's action and status (``applied`` / ``unchanged``).

    Raises:
        ConfigError: The stack, a pool's job settings, a block, a variable or ``timeout`` is
            invalid (every problem is listed); nothing was written.
        MissingExtraError: An extra needed by a declared object is not installed.
        ApplyError: The Prefect API refused, failed or did not answer, or an existing object is
            not managed by oxeo-flows; ``exc.plan`` gives each item's status: ``applied``,
            ``unknown`` (the write was sent, its answer never came) or ``not applied``.

    Example:
        ```python
        from oxeo_flows import apply_stack

        plan = apply_stack("prod", dry_run=True)
        print(plan.summary())
        for item in plan.items:
            print(item.kind, item.name, item.action, item.changes)
        ```
    """
    from oxeo_flows.apply._build import build_blocks, build_pools, build_variables
    from oxeo_flows.stack import resolve_stack

    calls = ApiCalls(check_timeout(timeout))
    the_stack = resolve_stack(stack)

    # 1. build: validate everything before any I/O on the API.
    errors: list[str] = []
    pools = build_pools(the_stack, errors)
    blocks = build_blocks(the_stack, errors)
    variables = build_variables(the_stack, errors)
    if errors:
        lines = "\n".join(f"  - {e}" for e in errors)
        msg = (
            f"stack {the_stack.name!r} cannot be applied; nothing was written. "
            f"{len(errors)} problem(s):\n{lines}"
        )
        raise ConfigError(msg)

    with calls.scope():
        # 2. plan: reads only.
        plan = _plan(the_stack, pools, blocks, variables, calls, adopt=adopt, dry_run=dry_run)
        # 3. write, in plan order; stop at the first failure.
        if not dry_run:
            _write(plan, calls)
    return plan


def _plan(
    stack: Stack,
    pools: list[PoolSpec],
    blocks: list[BlockSpec],
    variables: dict[str, Any],
    calls: ApiCalls,
    *,
    adopt: bool,
    dry_run: bool,
) -> ApplyPlan:
    from oxeo_flows.apply._blocks import plan_blocks, plan_variables, read_state
    from oxeo_flows.errors import MissingExtraError

    plan = ApplyPlan(stack=stack.name, dry_run=dry_run)
    refusals: list[str] = []
    try:
        state = calls.run(functools.partial(read_state, blocks, variables))
        plan.items += plan_blocks(
            blocks, state, calls, adopt=adopt, dry_run=dry_run, refusals=refusals
        )
        plan.items += plan_variables(
            variables, state, adopt=adopt, dry_run=dry_run, refusals=refusals
        )
        declared = {(b.slug, b.name) for b in blocks}
        block_ids = _BlockIds(declared, pending_ok=True)
        for spec in pools:
            read = functools.partial(_pool_plan, spec, stack, block_ids=block_ids, dry=True)
            note = None
            try:
                result = calls.run(functools.partial(read, adopt=adopt))
            except (ConfigError, MissingExtraError):
                raise
            except OxeoFlowsError as exc:
                if classify(exc).http:
                    raise
                if not (dry_run and "not managed by oxeo-flows" in str(exc)):
                    refusals.append(f"pool {spec.name!r}: {exc}")
                    continue
                # A read-only plan shows what adopting would change.
                result = calls.run(functools.partial(read, adopt=True))
                note = UNMANAGED_NOTE
            item = PlanItem(
                "pool", spec.name, spec.type, action_of(result.action), result.changes, note=note
            )
            item._write = _pool_writer(spec, stack, adopt, declared, item)
            plan.items.append(item)
    except (ConfigError, MissingExtraError):
        raise
    except Exception as exc:
        if classify(exc).http or not isinstance(exc, OxeoFlowsError):
            msg = (
                f"stack {stack.name!r} was not applied; nothing was written: reading the "
                f"Prefect API failed: {calls.reason(exc)}. {calls.fix(exc)}"
            )
            raise ApplyError(msg, plan=plan) from exc
        refusals.append(str(exc))
    if refusals:
        lines = "\n".join(f"  - {r}" for r in refusals)
        msg = f"stack {stack.name!r} was not applied; nothing was written:\n{lines}"
        raise ApplyError(msg, plan=plan)
    return plan


def _write(plan: ApplyPlan, calls: ApiCalls) -> None:
    for item in plan.items:
        if item.action == "unchanged" or item._write is None:
            continue
        try:
            # Every writer re-reads before it writes, so running it again is safe; a 409 means
            # a concurrent apply created the object first: run again, which re-reads it.
            calls.run(item._write, conflicts=2)
        except Exception as exc:
            item.unknown = classify(exc).lost
            raise ApplyError(_failure(plan, item, exc, calls), plan=plan) from exc
        item.applied = True


def _failure(plan: ApplyPlan, item: PlanItem, exc: BaseException, calls: ApiCalls) -> str:
    done = [label(i) for i in plan.items if i.applied]
    parts = [
        f"applying stack {plan.stack!r} failed at {label(item)}: {calls.reason(exc)}.",
        f"Applied before the failure: {', '.join(done) or 'nothing'}.",
    ]
    if plan.unknown:
        unknown = ", ".join(label(i) for i in plan.unknown)
        parts.append(f"Unknown (sent, but no answer came back): {unknown}.")
    parts.append(f"Not applied: {', '.join(label(i) for i in plan.pending) or 'nothing'}.")
    parts.append(calls.fix(exc))
    return " ".join(parts)


async def aapply_stack(
    stack: Stack | str | None = None,
    *,
    dry_run: bool = False,
    adopt: bool = False,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the API wait, not a cancel scope)
) -> ApplyPlan:
    """Async `apply_stack`: the same work on a worker thread, never blocking the event loop.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.
        dry_run: Build and compare only; write nothing.
        adopt: Take over existing objects that oxeo-flows did not create.
        timeout: Seconds to keep trying a Prefect API call that gets no answer.

    Returns:
        The `ApplyPlan`.
    """
    import anyio.to_thread

    call = functools.partial(apply_stack, stack, dry_run=dry_run, adopt=adopt, timeout=timeout)
    return await anyio.to_thread.run_sync(call)


def _pool_writer(
    spec: PoolSpec,
    stack: Stack,
    adopt: bool,
    declared: set[tuple[str, str]],
    item: PlanItem,
) -> Callable[[], None]:
    def write() -> None:
        # Blocks are written before pools: every reference resolves to a saved id now. The
        # pool is read again first, so one created meanwhile is updated (or left unchanged).
        ids = _BlockIds(declared, pending_ok=False)
        result = _pool_plan(spec, stack, adopt=adopt, block_ids=ids, dry=False)
        if result.action == "unchanged":
            item.note = item.note or CONCURRENT_NOTE
        item.changes = result.changes or item.changes

    return write
