"""The plan `apply_stack` returns: one `PlanItem` per object, and the markers' names."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BLOCK_MARKER_PREFIX",
    "CONCURRENT_NOTE",
    "MANAGED_BLOCKS_VARIABLE",
    "MANAGED_TAG",
    "UNMANAGED_NOTE",
    "Action",
    "ApplyPlan",
    "Kind",
    "PlanItem",
    "Status",
    "action_of",
    "block_marker",
    "label",
]

#: Tag carried by every Prefect variable that oxeo-flows manages (marker variables included).
MANAGED_TAG = "oxeo-flows"
#: The 0.2.0 registry of managed blocks (a list of ``<block type>/<name>``): read, never written.
MANAGED_BLOCKS_VARIABLE = "oxeo_flows_managed_blocks"
#: Prefix of the marker variables, one per managed block (see `block_marker`).
BLOCK_MARKER_PREFIX = "oxeo_flows_block__"

Kind = Literal["pool", "block", "variable"]
Action = Literal["create", "update", "unchanged"]
Status = Literal["unchanged", "applied", "unknown", "not applied"]

#: Note on a dry-run plan item that exists but is not managed (a real apply needs adopt).
UNMANAGED_NOTE = "exists, not managed by oxeo-flows: apply needs --adopt"
#: Note on an item another apply had already written when this one came to write it.
CONCURRENT_NOTE = "already up to date when written (by a concurrent apply)"

_MAX_VARIABLE_NAME = 255


def block_marker(slug: str, name: str) -> str:
    """The name of the marker variable that says oxeo-flows manages the block ``<slug>/<name>``.

    ``oxeo_flows_block__<slug>__<name>`` (slugs and block names hold only lowercase letters,
    digits and ``-``, so the ``__`` separators are unambiguous); a name longer than Prefect's
    255 characters ends in a hash instead.

    Args:
        slug: Block type slug, e.g. ``s3-bucket``.
        name: Block document name.

    Returns:
        The Prefect variable name.
    """
    full = f"{BLOCK_MARKER_PREFIX}{slug}__{name}"
    if len(full) <= _MAX_VARIABLE_NAME:
        return full
    digest = hashlib.sha256(f"{slug}/{name}".encode()).hexdigest()[:16]
    return f"{full[: _MAX_VARIABLE_NAME - 18]}__{digest}"


@dataclass
class PlanItem:
    """One object of an `ApplyPlan`.

    Attributes:
        kind: ``pool``, ``block`` or ``variable``.
        name: The object's name.
        type: Pool type (``vertex-ai``...), block type slug (``s3-bucket``...) or ``variable``.
        action: ``create``, ``update`` or ``unchanged``.
        changes: Dotted field path to ``(old, new)``; secret values are masked.
        applied: True once the API confirmed the write (never True for ``unchanged`` items).
        unknown: True when the write was sent but no answer came back (the server may have
            committed it); see `status`.
        note: Extra information (e.g. ``adopted``).
    """

    kind: Kind
    name: str
    type: str
    action: Action
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    applied: bool = False
    note: str | None = None
    unknown: bool = False
    _write: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> Status:
        """``unchanged``, ``applied``, ``unknown`` (sent, no answer) or ``not applied``."""
        if self.applied:
            return "applied"
        if self.unknown:
            return "unknown"
        return "unchanged" if self.action == "unchanged" else "not applied"

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
            "status": self.status,
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
        """Items to create or update that were not applied (status ``not applied``)."""
        return [i for i in self.items if i.status == "not applied"]

    @property
    def unknown(self) -> list[PlanItem]:
        """Items whose write was sent but never answered (status ``unknown``)."""
        return [i for i in self.items if i.status == "unknown"]

    def summary(self) -> str:
        """One line: counts of create / update / unchanged, and writes."""
        counts = {a: sum(1 for i in self.items if i.action == a) for a in _ACTIONS}
        head = ", ".join(
            f"{n} to {a}" if a != "unchanged" else f"{n} unchanged" for a, n in counts.items()
        )
        if self.dry_run:
            return f"stack {self.stack!r}: {head} (dry run, nothing written)"
        tail = f", {len(self.unknown)} unknown" if self.unknown else ""
        return f"stack {self.stack!r}: {head}; {self.writes} write(s){tail}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the plan."""
        return {
            "stack": self.stack,
            "dry_run": self.dry_run,
            "has_drift": self.has_drift,
            "writes": self.writes,
            "unknown": len(self.unknown),
            "items": [item.to_dict() for item in self.items],
        }


_ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged")


def action_of(result_action: str) -> Action:
    """``created`` / ``updated`` / ``unchanged`` (an ensure result) as a plan action."""
    if result_action == "created":
        return "create"
    return "update" if result_action == "updated" else "unchanged"


def label(item: PlanItem) -> str:
    """``pool 'name'``: how messages name an item."""
    return f"{item.kind} {item.name!r}"
