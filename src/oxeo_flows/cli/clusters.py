"""``oxeo-flows clusters``: list and clean up Dask VMs left behind; stop a named cluster."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import typer

from oxeo_flows.cli._common import console, friendly_errors, table

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="List and clean up Dask cluster VMs (GCE, EC2).", no_args_is_help=True)

_STACK = typer.Option(None, "--stack", "-s", help="Stack name (default: active).")
_CLOUD = typer.Option(
    None, "--cloud", help="gcp or ec2 (repeatable; default: what the stack configures)."
)
_OLDER = typer.Option(None, "--older-than", help="Only VMs at least this old, e.g. 30m, 2h, 1d.")
_CLUSTER = typer.Option(None, "--cluster", help="Only VMs of this cluster name.")
_ALL_STACKS = typer.Option(
    False,
    "--all-stacks",
    help="VMs of every stack in the project/region (default: only the stack's own VMs).",
)


def _table(vms: list, title: str) -> Table:  # type: ignore[type-arg]
    out = table(
        title, "cloud", "stack", "cluster", "name", "id", "location", "state", "age", "flow run"
    )
    for vm in vms:
        age = vm.age()
        shown = "?" if age is None else f"{int(age.total_seconds() // 60)}m"
        out.add_row(
            vm.cloud,
            vm.stack or "-",
            vm.cluster,
            vm.name,
            vm.id,
            vm.location,
            vm.state,
            shown,
            vm.flow_run,
        )
    return out


@app.command("list")
def list_(  # noqa: PLR0917 - typer maps parameters to options
    stack: str | None = _STACK,
    cloud: list[str] | None = _CLOUD,
    older_than: str | None = _OLDER,
    cluster: str | None = _CLUSTER,
    all_stacks: bool = _ALL_STACKS,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List live VMs of the stack's Dask clusters (found by their labels / tags)."""
    from oxeo_flows.clusters.cleanup import list_cluster_vms, parse_age

    with friendly_errors():
        vms = list_cluster_vms(
            stack,
            clouds=cloud or None,
            older_than=parse_age(older_than) if older_than else None,
            cluster=cluster,
            all_stacks=all_stacks,
        )
    if as_json:
        rows = [
            {**dataclasses.asdict(vm), "created": vm.created.isoformat() if vm.created else None}
            for vm in vms
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not vms:
        console.print("No Dask cluster VMs found.")
        return
    console.print(_table(vms, f"{len(vms)} Dask cluster VM(s)"))


@app.command("cleanup")
def cleanup(  # noqa: PLR0917 - typer maps parameters to options
    stack: str | None = _STACK,
    cloud: list[str] | None = _CLOUD,
    older_than: str | None = _OLDER,
    cluster: str | None = _CLUSTER,
    all_stacks: bool = _ALL_STACKS,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be deleted."),
) -> None:
    """Delete (GCE) / terminate (EC2) leftover Dask cluster VMs of the stack (its label/tag)."""
    from oxeo_flows.clusters.cleanup import delete_cluster_vms, list_cluster_vms, parse_age

    with friendly_errors():
        vms = list_cluster_vms(
            stack,
            clouds=cloud or None,
            older_than=parse_age(older_than) if older_than else None,
            cluster=cluster,
            all_stacks=all_stacks,
        )
        if not vms:
            console.print("No Dask cluster VMs found; nothing to delete.")
            return
        console.print(_table(vms, f"{len(vms)} Dask cluster VM(s) to delete"))
        if dry_run:
            console.print("Dry run: nothing deleted.")
            return
        if not yes and not typer.confirm(f"Delete these {len(vms)} VM(s)?", default=False):
            console.print("Aborted: nothing deleted.")
            raise typer.Exit(1)
        delete_cluster_vms(vms, stack=stack)
    console.print(f"Deleted {len(vms)} VM(s): {', '.join(vm.id for vm in vms)}")


@app.command("stop")
def stop(
    name: str = typer.Argument(..., help="The cluster's name (dask.cluster-name)."),
    stack: str | None = _STACK,
) -> None:
    """Stop a named (reusable) Dask cluster: delete its VMs and its TLS secrets."""
    from oxeo_flows.clusters.reuse import stop_cluster

    with friendly_errors():
        done = stop_cluster(name, stack=stack)
    vms = done["vms"]
    console.print(
        f"Stopped Dask cluster {name}: deleted {len(vms)} VM(s)"
        + (f" ({', '.join(vms)})" if vms else "")
        + " and its TLS secrets."
    )
