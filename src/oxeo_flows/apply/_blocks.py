"""Blocks and variables of `apply_stack`: read, plan, and write them without racing.

Ownership is per object, and each marker is written atomically with, or before, its object:

- A **variable** carries the tag `MANAGED_TAG`, sent in the create request itself.
- A **block** has its own marker variable (`block_marker`), created before the block is
  saved. Creating it is create-if-absent: the API answers 409 to a second create, which means
  "already marked", so two applies never overwrite each other's markers (the 0.2.0 design kept
  one shared list, rewritten by every apply: two applies at once dropped each other's entries).
- A block listed in the 0.2.0 registry `MANAGED_BLOCKS_VARIABLE` but without a marker is still
  ours: its plan item creates the marker (``(marker)`` in the changes). The registry is never
  written again.

Races with a concurrent apply, once our read is stale: a marker create answered 409 is fine; a
variable create answered 409 re-reads the variable (ours: updated if its value differs; not
ours: refused); a block save answered 409 is an update (Prefect's ``save(overwrite=True)``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oxeo_flows.apply._plan import (
    CONCURRENT_NOTE,
    MANAGED_BLOCKS_VARIABLE,
    MANAGED_TAG,
    UNMANAGED_NOTE,
    PlanItem,
    action_of,
    block_marker,
)
from oxeo_flows.errors import ApplyError

if TYPE_CHECKING:
    from oxeo_flows.apply._build import BlockSpec
    from oxeo_flows.apply._calls import ApiCalls

__all__ = ["ApiState", "client", "mark_block", "plan_blocks", "plan_variables", "read_state"]


def client() -> Any:
    """A new sync Prefect client (made in the caller's settings context)."""
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


@dataclass(frozen=True)
class ApiState:
    """What the Prefect API holds for the stack's blocks and variables (one read pass)."""

    legacy: frozenset[str]
    variables: dict[str, Any]
    blocks: dict[tuple[str, str], bool]
    markers: dict[tuple[str, str], bool]


def _block_exists(api: Any, slug: str, name: str) -> bool:
    from oxeo_flows.blocks import block_document_id
    from oxeo_flows.errors import BlockNotFoundError

    try:
        block_document_id(slug, name, client=api)
    except BlockNotFoundError:
        return False
    return True


def read_state(blocks: list[BlockSpec], variables: dict[str, Any]) -> ApiState:
    """Read the 0.2.0 registry, the variables, and each block and its marker (reads only)."""
    with client() as api:
        registry = api.read_variable_by_name(MANAGED_BLOCKS_VARIABLE)
        legacy: frozenset[str] = frozenset()
        if registry is not None and isinstance(registry.value, list):
            legacy = frozenset(str(v) for v in registry.value)
        found = {name: api.read_variable_by_name(name) for name in variables}
        exists = {(b.slug, b.name): _block_exists(api, b.slug, b.name) for b in blocks}
        markers = {
            (b.slug, b.name): api.read_variable_by_name(block_marker(b.slug, b.name)) is not None
            for b in blocks
        }
    return ApiState(legacy, found, exists, markers)


# ----------------------------------------------------------------------------- blocks


def plan_blocks(
    blocks: list[BlockSpec],
    state: ApiState,
    calls: ApiCalls,
    *,
    adopt: bool,
    dry_run: bool,
    refusals: list[str],
) -> list[PlanItem]:
    """One plan item per block; an unmanaged existing block is refused unless adopted."""
    from oxeo_flows.blocks import ensure_block

    creds_name = next((b.name for b in blocks if b.role == "aws-credentials"), None)
    items: list[PlanItem] = []
    for spec in blocks:
        key = f"{spec.slug}/{spec.name}"
        exists = state.blocks[(spec.slug, spec.name)]
        marked = state.markers[(spec.slug, spec.name)]
        listed = key in state.legacy
        note = None
        if exists and not (marked or listed):
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
        result = calls.run(functools.partial(ensure_block, spec.block, spec.name, dry_run=True))
        item = PlanItem(
            "block", spec.name, spec.slug, action_of(result.action), result.changes, note=note
        )
        if exists and not marked:
            # Adopting, or moving the marker out of the 0.2.0 registry.
            old = f"listed in {MANAGED_BLOCKS_VARIABLE}" if listed else None
            item.changes = {**item.changes, "(marker)": (old, block_marker(spec.slug, spec.name))}
            if item.action == "unchanged":
                item.action = "update"
        item._write = _block_writer(spec, item, creds_name, mark=not marked)
        items.append(item)
    return items


def _create_marker(api: Any, slug: str, name: str) -> None:
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    marker = VariableCreate(
        name=block_marker(slug, name),
        value={"managed-by": "oxeo-flows", "block": f"{slug}/{name}"},
        tags=[MANAGED_TAG],
    )
    # 409: already marked, by a concurrent apply or by one interrupted after the marker.
    with contextlib.suppress(ObjectAlreadyExists):
        api.create_variable(marker)


def mark_block(slug: str, name: str) -> None:
    """Mark a block document as managed by oxeo-flows (idempotent; for `deploy_flow`).

    Args:
        slug: The block type slug, e.g. ``s3-bucket``.
        name: The block document name.
    """
    with client() as api:
        _create_marker(api, slug, name)


def _block_writer(
    spec: BlockSpec, item: PlanItem, creds_name: str | None, *, mark: bool
) -> Callable[[], None]:
    def write() -> None:
        from oxeo_flows.blocks import ensure_block

        if mark:
            # The marker first: a block of ours never exists without it, even if we stop here.
            with client() as api:
                _create_marker(api, spec.slug, spec.name)
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
        result = ensure_block(block, spec.name)
        if result.action == "unchanged" and set(item.changes) - {"(marker)"}:
            item.note = item.note or CONCURRENT_NOTE

    return write


# ----------------------------------------------------------------------------- variables


def plan_variables(
    variables: dict[str, Any],
    state: ApiState,
    *,
    adopt: bool,
    dry_run: bool,
    refusals: list[str],
) -> list[PlanItem]:
    """One plan item per variable; an existing variable without the tag needs adopt."""
    items: list[PlanItem] = []
    for name, value in variables.items():
        current = state.variables[name]
        if current is None:
            item = PlanItem("variable", name, "variable", "create", {"value": (None, value)})
            item._write = _variable_writer(item, value, create=True)
            items.append(item)
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
            new_tags = tags if MANAGED_TAG in tags else [*tags, MANAGED_TAG]
            item._write = _variable_writer(item, value, create=False, tags=new_tags)
        items.append(item)
    return items


def _variable_writer(
    item: PlanItem, value: Any, *, create: bool, tags: list[str] | None = None
) -> Callable[[], None]:
    name = item.name

    def write() -> None:
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate
        from prefect.exceptions import ObjectAlreadyExists

        new_tags = tags or [MANAGED_TAG]
        with client() as api:
            if create:
                try:
                    api.create_variable(VariableCreate(name=name, value=value, tags=[MANAGED_TAG]))
                    return
                except ObjectAlreadyExists:
                    current = api.read_variable_by_name(name)
                    if current is None:
                        raise
                # Created between our read and our write.
                if MANAGED_TAG not in (current.tags or []):
                    msg = (
                        f"variable {name!r} was created meanwhile by someone else (without the "
                        f"{MANAGED_TAG!r} tag), so it was not changed. Adopt it with "
                        "`oxeo-flows apply --adopt`, or rename it in the stack's [variables]."
                    )
                    raise ApplyError(msg)
                item.note = CONCURRENT_NOTE
                if current.value == value:
                    return
                new_tags = list(current.tags or [])
            api.update_variable(VariableUpdate(name=name, value=value, tags=new_tags))

    return write
