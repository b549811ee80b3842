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
   marks exactly which items were applied.

What is managed, and how oxeo-flows recognises its own objects (the *marker*):

- **Work pools** (``[pools.<name>]``, types ``vertex-ai``, ``docker``, ``process``): the
  marker is the ``x-oxeo-flows`` key stored in the pool's base job template (see
  `oxeo_flows.pools`).
- **Prefect variables** (``[variables]``): the marker is the variable tag ``oxeo-flows``.
- **Blocks**: the S3 storage block (``storage.bucket``; named ``storage.block-name``, or the
  name `deploy_flow` uses), the AWS credentials block (``storage.credentials-block`` or
  ``aws.credentials-block``) and Docker registry credentials (``docker.registry-credentials-block``
  with ``registry-url`` / ``registry-username``, in ``[docker]`` or a docker pool). Block
  documents cannot carry tags, so the marker is a registry: the Prefect variable
  ``oxeo_flows_managed_blocks`` (itself tagged ``oxeo-flows``) lists the ``<block type>/<name>``
  of every block apply created or adopted.

Adopting: an existing object without the marker is only changed when adopted: ``adopt=True``
(``oxeo-flows apply --adopt``) adopts everything; ``adopt = true`` in a ``[pools.<name>]``
section adopts that pool. Adopting writes the marker (even when nothing else differs).
Objects removed from the stack are left in place (apply never deletes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from oxeo_flows.errors import ApplyError, ConfigError, OxeoFlowsError

if TYPE_CHECKING:
    from prefect.blocks.core import Block

    from oxeo_flows.stack import Stack

__all__ = [
    "MANAGED_BLOCKS_VARIABLE",
    "MANAGED_TAG",
    "UNMANAGED_NOTE",
    "ApplyPlan",
    "PlanItem",
    "aapply_stack",
    "apply_stack",
]

#: Tag carried by every Prefect variable that oxeo-flows manages.
MANAGED_TAG = "oxeo-flows"
#: Prefect variable listing the ``<block type>/<name>`` of every block oxeo-flows manages.
MANAGED_BLOCKS_VARIABLE = "oxeo_flows_managed_blocks"

Kind = Literal["pool", "block", "variable"]
Action = Literal["create", "update", "unchanged"]

#: Note on a dry-run plan item that exists but is not managed (a real apply needs adopt).
UNMANAGED_NOTE = "exists, not managed by oxeo-flows: apply needs --adopt"

_VARIABLE_NAME = re.compile(r"^[a-z0-9_-]{1,255}$")
_PENDING_ID = "(id of the block created by this apply)"


@dataclass
class PlanItem:
    """One object of an `ApplyPlan`.

    Attributes:
        kind: ``pool``, ``block`` or ``variable``.
        name: The object's name.
        type: Pool type (``vertex-ai``...), block type slug (``s3-bucket``...) or ``variable``.
        action: ``create``, ``update`` or ``unchanged``.
        changes: Dotted field path to ``(old, new)``; secret values are masked.
        applied: True once the write succeeded (never True for ``unchanged`` items).
        note: Extra information (e.g. ``adopted``).
    """

    kind: Kind
    name: str
    type: str
    action: Action
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    applied: bool = False
    note: str | None = None
    _write: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the item."""
        return {
            "kind": self.kind,
            "name": self.name,
            "type": self.type,
            "action": self.action,
            "changes": {
                k: {"old": _json(o), "new": _json(n)} for k, (o, n) in self.changes.items()
            },
            "applied": self.applied,
            "note": self.note,
        }


def _json(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)


@dataclass
class ApplyPlan:
    """What `apply_stack` found and did.

    Attributes:
        stack: The stack's name.
        items: One item per managed object, in write order.
        dry_run: True when nothing was (to be) written.
    """

    stack: str
    items: list[PlanItem] = field(default_factory=list)
    dry_run: bool = False

    @property
    def writes(self) -> int:
        """How many objects were written (0 for an unchanged stack or a dry run)."""
        return sum(1 for item in self.items if item.applied)

    @property
    def has_drift(self) -> bool:
        """True when the Prefect API differs from the stack (something to create or update)."""
        return any(item.action != "unchanged" for item in self.items)

    @property
    def pending(self) -> list[PlanItem]:
        """Items to create or update that were not applied (yet)."""
        return [i for i in self.items if i.action != "unchanged" and not i.applied]

    def summary(self) -> str:
        """One line: counts of create / update / unchanged, and writes."""
        counts = {a: sum(1 for i in self.items if i.action == a) for a in _ACTIONS}
        head = ", ".join(
            f"{n} to {a}" if a != "unchanged" else f"{n} unchanged" for a, n in counts.items()
        )
        if self.dry_run:
            return f"stack {self.stack!r}: {head} (dry run, nothing written)"
        return f"stack {self.stack!r}: {head}; {self.writes} write(s)"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the plan."""
        return {
            "stack": self.stack,
            "dry_run": self.dry_run,
            "has_drift": self.has_drift,
            "writes": self.writes,
            "items": [item.to_dict() for item in self.items],
        }


_ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged")


# ----------------------------------------------------------------------------- build


@dataclass
class _PoolSpec:
    name: str
    type: str
    section: Any
    job: Any  # VertexJob | DockerJob | dict of process defaults


@dataclass
class _BlockSpec:
    name: str
    slug: str
    block: Block
    role: Literal["aws-credentials", "storage", "registry"]


def _build_pools(stack: Stack, errors: list[str]) -> list[_PoolSpec]:
    from oxeo_flows.pools.kinds import pool_kind

    out: list[_PoolSpec] = []
    for name, section in stack.pools.items():
        try:
            job = pool_kind(section.type).build_job(stack, name, {})
        except OxeoFlowsError as exc:
            errors.append(f"pools.{name} ({section.type}): {exc}")
            continue
        out.append(_PoolSpec(name, section.type, section, job))
    return out


def _registry_blocks(stack: Stack, errors: list[str]) -> list[_BlockSpec]:
    """The registry credentials blocks of ``[docker]`` and of every docker pool (layered)."""
    from oxeo_flows.docker_pool import REGISTRY_BLOCK_TYPE
    from oxeo_flows.pools.kind_docker import KIND, docker_registry_credentials
    from oxeo_flows.pools.kinds import layered_section

    out: list[_BlockSpec] = []
    targets: list[tuple[str | None, str]] = [(None, "docker")]
    targets += [(n, f"pools.{n}") for n, p in stack.pools.items() if p.type == "docker"]
    seen: set[str] = set()
    for pool, where in targets:
        try:
            section: Any = layered_section(stack, KIND, pool)[0]
        except OxeoFlowsError:
            continue  # reported by _build_pools
        name = section.registry_credentials_block
        if not name or not section.registry_url or name in seen:
            continue
        seen.add(name)
        try:
            block = docker_registry_credentials(stack=stack, pool=pool)
        except OxeoFlowsError as exc:
            errors.append(f"{where}.registry-credentials-block {name!r}: {exc}")
            continue
        out.append(_BlockSpec(name, REGISTRY_BLOCK_TYPE, block, "registry"))
    return out


def _build_blocks(stack: Stack, errors: list[str]) -> list[_BlockSpec]:
    out: list[_BlockSpec] = []
    creds_name = stack.storage.credentials_block or stack.aws.credentials_block
    creds: Any = None
    if creds_name or stack.storage.bucket:
        try:
            from oxeo_flows.aws import aws_credentials

            creds = aws_credentials(stack=stack)
            if creds_name:
                out.append(_BlockSpec(creds_name, "aws-credentials", creds, "aws-credentials"))
        except OxeoFlowsError as exc:
            errors.append(f"aws credentials block {creds_name!r}: {exc}")
    if stack.storage.bucket and creds is not None:
        try:
            from oxeo_flows.storage import s3_bucket, storage_block_name

            bucket = s3_bucket(folder=stack.storage.folder or "", stack=stack, credentials=creds)
            out.append(_BlockSpec(storage_block_name(stack), "s3-bucket", bucket, "storage"))
        except OxeoFlowsError as exc:
            errors.append(f"storage block: {exc}")
    out.extend(_registry_blocks(stack, errors))
    for spec in out:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", spec.name):
            errors.append(
                f"block name {spec.name!r} ({spec.slug}) is invalid: use lowercase letters, "
                "digits and '-'"
            )
    return out


def _build_variables(stack: Stack, errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in stack.variables.items():
        where = stack.describe("variables", name)
        if not _VARIABLE_NAME.match(name):
            errors.append(
                f"{where}: {name!r} is not a valid Prefect variable name "
                "(lowercase letters, digits, '-' and '_', at most 255 characters)"
            )
            continue
        if name == MANAGED_BLOCKS_VARIABLE:
            errors.append(f"{where}: {name!r} is reserved by oxeo-flows (its block registry)")
            continue
        try:
            out[name] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as exc:
            errors.append(f"{where}: the value is not JSON-serialisable ({exc})")
    return out


# ----------------------------------------------------------------------------- plan


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _api_failure(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"


def _read_variable(client: Any, name: str) -> Any:
    return client.read_variable_by_name(name)


def _block_exists(client: Any, slug: str, name: str) -> bool:
    from oxeo_flows.blocks import block_document_id
    from oxeo_flows.errors import BlockNotFoundError

    try:
        block_document_id(slug, name, client=client)
    except BlockNotFoundError:
        return False
    return True


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
    spec: _PoolSpec, stack: Stack, *, adopt: bool, block_ids: _BlockIds, dry: bool
) -> Any:
    """Run the pool's ensure (``dry`` = read only); return its PoolResult."""
    from oxeo_flows.pools.kinds import ensure_stack_pool

    return ensure_stack_pool(
        stack, spec.name, job=spec.job, adopt=adopt, dry_run=dry, block_ids=block_ids
    )


def _action(result_action: str) -> Action:
    return {"created": "create", "updated": "update"}.get(result_action, "unchanged")  # type: ignore[return-value]


def apply_stack(
    stack: Stack | str | None = None, *, dry_run: bool = False, adopt: bool = False
) -> ApplyPlan:
    """Create or update the work pools, blocks and variables a stack declares.

    See the module docstring of `oxeo_flows.apply` for what is managed and how managed objects
    are marked. Everything is validated before the first write; an unchanged stack makes zero
    writes.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.
        dry_run: Build and compare only; write nothing (``oxeo-flows apply --dry-run``).
        adopt: Take over existing objects that oxeo-flows did not create.

    Returns:
        The `ApplyPlan`, with each item's action and whether it was applied.

    Raises:
        ConfigError: The stack, a pool's job settings, a block or a variable is invalid
            (every problem is listed); nothing was written.
        MissingExtraError: An extra needed by a declared object is not installed.
        ApplyError: The Prefect API refused or failed, or an existing object is not managed
            by oxeo-flows; ``exc.plan`` marks what was applied before the failure.

    Example:
        ```python
        from oxeo_flows import apply_stack

        plan = apply_stack("prod", dry_run=True)
        print(plan.summary())
        for item in plan.items:
            print(item.kind, item.name, item.action, item.changes)
        ```
    """
    from oxeo_flows.errors import MissingExtraError
    from oxeo_flows.stack import resolve_stack

    the_stack = resolve_stack(stack)

    # 1. build: validate everything before any I/O on the API.
    errors: list[str] = []
    pools = _build_pools(the_stack, errors)
    blocks = _build_blocks(the_stack, errors)
    variables = _build_variables(the_stack, errors)
    if errors:
        lines = "\n".join(f"  - {e}" for e in errors)
        msg = (
            f"stack {the_stack.name!r} cannot be applied; nothing was written. "
            f"{len(errors)} problem(s):\n{lines}"
        )
        raise ConfigError(msg)

    # 2. plan: reads only.
    plan = ApplyPlan(stack=the_stack.name, dry_run=dry_run)
    refusals: list[str] = []
    try:
        _plan_blocks_and_variables(
            plan, blocks, variables, adopt=adopt, dry_run=dry_run, refusals=refusals
        )
        declared = {(b.slug, b.name) for b in blocks}
        block_ids = _BlockIds(declared, pending_ok=True)
        for spec in pools:
            note = None
            try:
                result = _pool_plan(spec, the_stack, adopt=adopt, block_ids=block_ids, dry=True)
            except (ConfigError, MissingExtraError):
                raise
            except OxeoFlowsError as exc:
                if not (dry_run and "not managed by oxeo-flows" in str(exc)):
                    refusals.append(f"pool {spec.name!r}: {exc}")
                    continue
                # A read-only plan shows what adopting would change.
                result = _pool_plan(spec, the_stack, adopt=True, block_ids=block_ids, dry=True)
                note = UNMANAGED_NOTE
            item = PlanItem(
                "pool", spec.name, spec.type, _action(result.action), result.changes, note=note
            )
            item._write = _pool_writer(spec, the_stack, adopt, declared, item)
            plan.items.append(item)
    except (ConfigError, MissingExtraError):
        raise
    except OxeoFlowsError as exc:
        refusals.append(str(exc))
    except Exception as exc:
        refusals.append(_api_failure("reading the Prefect API", exc))
    if refusals:
        lines = "\n".join(f"  - {r}" for r in refusals)
        msg = f"stack {the_stack.name!r} was not applied; nothing was written:\n{lines}"
        raise ApplyError(msg, plan=plan)
    if dry_run:
        return plan

    # 3. write, in plan order; stop at the first failure.
    for item in plan.items:
        if item.action == "unchanged" or item._write is None:
            continue
        try:
            item._write()
        except Exception as exc:
            done = [f"{i.kind} {i.name!r}" for i in plan.items if i.applied]
            left = [f"{i.kind} {i.name!r}" for i in plan.pending if i is not item]
            msg = (
                f"applying stack {the_stack.name!r} failed at {item.kind} {item.name!r}: {exc}. "
                f"Applied before the failure: {', '.join(done) or 'nothing'}. "
                f"Not applied: {', '.join([f'{item.kind} {item.name!r}', *left])}. "
                "Fix the problem and run apply again (applied items will show as unchanged)."
            )
            raise ApplyError(msg, plan=plan) from exc
        item.applied = True
    return plan


async def aapply_stack(
    stack: Stack | str | None = None, *, dry_run: bool = False, adopt: bool = False
) -> ApplyPlan:
    """Async `apply_stack`: the same work on a worker thread, never blocking the event loop.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.
        dry_run: Build and compare only; write nothing.
        adopt: Take over existing objects that oxeo-flows did not create.

    Returns:
        The `ApplyPlan`.
    """
    import functools

    import anyio.to_thread

    call = functools.partial(apply_stack, stack, dry_run=dry_run, adopt=adopt)
    return await anyio.to_thread.run_sync(call)


def _pool_writer(
    spec: _PoolSpec,
    stack: Stack,
    adopt: bool,
    declared: set[tuple[str, str]],
    item: PlanItem,
) -> Callable[[], None]:
    def write() -> None:
        # Blocks are written before pools: every reference resolves to a saved id now.
        ids = _BlockIds(declared, pending_ok=False)
        result = _pool_plan(spec, stack, adopt=adopt, block_ids=ids, dry=False)
        item.changes = result.changes or item.changes

    return write


def _plan_blocks_and_variables(
    plan: ApplyPlan,
    blocks: list[_BlockSpec],
    variables: dict[str, Any],
    *,
    adopt: bool,
    dry_run: bool,
    refusals: list[str],
) -> None:
    from oxeo_flows.blocks import ensure_block

    with _client() as client:
        registry_var = _read_variable(client, MANAGED_BLOCKS_VARIABLE)
        existing_vars = {name: _read_variable(client, name) for name in variables}
        block_exists = {(b.slug, b.name): _block_exists(client, b.slug, b.name) for b in blocks}

    creds_name = next((b.name for b in blocks if b.role == "aws-credentials"), None)
    managed: list[str] = []
    if registry_var is not None and isinstance(registry_var.value, list):
        managed = [str(v) for v in registry_var.value]
    new_managed = list(managed)
    block_items: list[PlanItem] = []
    for spec in blocks:
        key = f"{spec.slug}/{spec.name}"
        exists = block_exists[(spec.slug, spec.name)]
        note = None
        if exists and key not in managed:
            if dry_run and not adopt:
                note = UNMANAGED_NOTE
            elif not adopt:
                refusals.append(
                    f"block {key!r} already exists and was not created by oxeo-flows, so it was "
                    "not changed. Adopt it with `oxeo-flows apply --adopt` (apply_stack(..., "
                    "adopt=True)), or choose another block name in the stack."
                )
                continue
            else:
                note = "adopted"
        result = ensure_block(spec.block, spec.name, dry_run=True)
        if key not in new_managed:
            new_managed.append(key)
        item = PlanItem(
            "block", spec.name, spec.slug, _action(result.action), result.changes, note=note
        )
        if note is not None and item.action == "unchanged":
            item.action = "update"
            item.changes = {"(marker)": (None, f"listed in {MANAGED_BLOCKS_VARIABLE}")}
        item._write = _block_writer(spec, item, creds_name)
        block_items.append(item)

    if sorted(new_managed) != sorted(managed) or (
        registry_var is not None and MANAGED_TAG not in (registry_var.tags or [])
    ):
        old = sorted(managed) if registry_var is not None else None
        reg = PlanItem(
            "variable",
            MANAGED_BLOCKS_VARIABLE,
            "variable",
            "create" if registry_var is None else "update",
            {"value": (old, sorted(new_managed))},
            note="registry of blocks managed by oxeo-flows",
        )
        reg._write = _variable_writer(
            MANAGED_BLOCKS_VARIABLE, sorted(new_managed), create=registry_var is None
        )
        plan.items.append(reg)
    plan.items.extend(block_items)

    for name, value in variables.items():
        current = existing_vars[name]
        if current is None:
            item = PlanItem("variable", name, "variable", "create", {"value": (None, value)})
            item._write = _variable_writer(name, value, create=True)
            plan.items.append(item)
            continue
        tags = list(current.tags or [])
        note = None
        if MANAGED_TAG not in tags:
            if dry_run and not adopt:
                note = UNMANAGED_NOTE
            elif not adopt:
                refusals.append(
                    f"variable {name!r} already exists without the {MANAGED_TAG!r} tag (it was not "
                    "created by oxeo-flows), so it was not changed. Adopt it with "
                    "`oxeo-flows apply --adopt`, or rename it in the stack's [variables]."
                )
                continue
            else:
                note = "adopted"
        changes: dict[str, tuple[Any, Any]] = {}
        if current.value != value:
            changes["value"] = (current.value, value)
        if MANAGED_TAG not in tags:
            changes["tags"] = (tags, [*tags, MANAGED_TAG])
        item = PlanItem(
            "variable", name, "variable", "update" if changes else "unchanged", changes, note=note
        )
        if changes:
            item._write = _variable_writer(
                name,
                value,
                create=False,
                tags=[*tags, MANAGED_TAG] if MANAGED_TAG not in tags else tags,
            )
        plan.items.append(item)


def _block_writer(spec: _BlockSpec, item: PlanItem, creds_name: str | None) -> Callable[[], None]:
    def write() -> None:
        from oxeo_flows.blocks import ensure_block

        block = spec.block
        creds = getattr(block, "credentials", None)
        if (
            spec.role == "storage"
            and creds_name
            and creds is not None
            and getattr(creds, "_block_document_id", None) is None
        ):
            # Reference the saved credentials block rather than store a copy.
            setattr(block, "credentials", type(creds).load(creds_name, _sync=True))  # noqa: B010
        ensure_block(block, spec.name)

    return write


def _variable_writer(
    name: str, value: Any, *, create: bool, tags: list[str] | None = None
) -> Callable[[], None]:
    def write() -> None:
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate

        with _client() as client:
            if create:
                client.create_variable(VariableCreate(name=name, value=value, tags=[MANAGED_TAG]))
            else:
                client.update_variable(
                    VariableUpdate(name=name, value=value, tags=tags or [MANAGED_TAG])
                )

    return write
