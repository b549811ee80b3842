"""The one ``ensure-pool`` command body, shared by ``oxeo-flows vertex`` and ``docker``."""

from __future__ import annotations

from oxeo_flows.cli._common import console, friendly_errors


def ensure_kind_pool(
    kind_type: str, name: str | None, *, stack: str | None, adopt: bool, dry_run: bool
) -> None:
    """Ensure a pool of ``kind_type`` from the stack through the pool-kind registry; print it."""
    with friendly_errors():
        from oxeo_flows.pools.kinds import ensure_kind_pool, pool_kind

        kind = pool_kind(kind_type)
        result = ensure_kind_pool(kind, name, stack=stack, adopt=adopt, dry_run=dry_run)
        verb = (
            f"would be {result.action}"
            if dry_run and result.action != "unchanged"
            else result.action
        )
        console.print(
            f"work pool {result.name} ({result.type}): {verb}", highlight=False, markup=False
        )
        for path, (old, new) in result.changes.items():
            console.print(f"  {path}: {old!r} -> {new!r}", highlight=False, markup=False)
