"""Secret checks: every name in ``secrets.required`` resolves (values are never shown)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oxeo_flows.errors import OxeoFlowsError

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings
    from oxeo_flows.stack import Stack

__all__ = ["check_secrets"]


def check_secrets(stack: Stack, out: Findings) -> None:
    """Resolve each required secret through the stack's sources."""
    from oxeo_flows.secrets import resolve_secret

    for name in stack.secrets.required:
        try:
            loaded = resolve_secret(name, stack=stack)
        except OxeoFlowsError as exc:
            out.add(
                "secrets",
                name,
                "fail",
                " ".join(str(exc).split())[:600],
                f"create the secret {name!r} in one of: {', '.join(stack.secrets.sources)}",
            )
        else:
            out.add("secrets", name, "ok", f"resolves from {loaded.source} ({loaded.where})")
