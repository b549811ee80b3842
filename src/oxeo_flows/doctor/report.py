"""The outcome of ``oxeo-flows doctor``: `Check`, `DoctorReport`, and the `Findings` collector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Check", "DoctorReport", "Findings", "Status"]

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    Attributes:
        group: Area: ``stack``, ``extras``, ``prefect``, ``vertex``, ``dask``, ``gcp-network``,
            ``storage``, ``secrets`` or ``docker``.
        name: Short name of the check.
        status: ``ok``, ``warn``, ``fail`` or ``skip``.
        message: What was found (for ``skip``: why it was skipped).
        fix: One line saying what to do (None when ``ok``).
    """

    group: str
    name: str
    status: Status
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "group": self.group,
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class DoctorReport:
    """All checks of one `run_doctor` call.

    Attributes:
        stack: The stack's name (None when it did not load).
        checks: The checks, in order.
    """

    stack: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips allowed)."""
        return not any(c.status == "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        """Number of checks per status."""
        return {
            s: sum(1 for c in self.checks if c.status == s) for s in ("ok", "warn", "fail", "skip")
        }

    def find(self, group: str, name: str | None = None) -> list[Check]:
        """Checks of ``group`` (and ``name``, when given)."""
        return [c for c in self.checks if c.group == group and (name is None or c.name == name)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "stack": self.stack,
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }


class Findings:
    """Where check functions append their `Check` results (one group at a time)."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(
        self, group: str, name: str, status: Status, message: str, fix: str | None = None
    ) -> None:
        """Record one outcome; ``fix`` is dropped for ``ok``."""
        self.checks.append(Check(group, name, status, message, fix if status != "ok" else None))
