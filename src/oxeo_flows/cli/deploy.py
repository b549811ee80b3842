"""``oxeo-flows deploy`` and ``oxeo-flows sync``: ship a flow, or just its code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from oxeo_flows.cli._common import console, err_console, friendly_errors

__all__ = ["deploy", "pull", "sync"]


def _parse_params(values: list[str] | None) -> dict[str, Any]:
    from oxeo_flows.errors import ConfigError

    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            msg = f"--param {item!r} must be KEY=VALUE (VALUE may be JSON)"
            raise ConfigError(msg)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def deploy(  # noqa: PLR0917 - a typer command: options are parameters
    entrypoint: str = typer.Argument(..., help="path/to/file.py:flow_function"),
    name: str = typer.Option(..., "--name", "-n", help="Deployment name."),
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    work_pool: str | None = typer.Option(None, "--pool", "-p", help="Work pool (default: stack)."),
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Default parameter KEY=VALUE (JSON values; repeatable)."),
    ] = None,
    cron: str | None = typer.Option(None, "--cron", help="Schedule as a cron expression."),
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Deployment tag (repeatable).")
    ] = None,
    src: str = typer.Option(".", "--src", help="Project directory (default: current)."),
    force: bool = typer.Option(
        False, "--force", help="Re-target an existing deployment to another pool or stack."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Sync the code, ensure the storage block and work pool, and register the deployment."""
    from oxeo_flows.deploy import deploy_flow

    with friendly_errors():
        result = deploy_flow(
            entrypoint,
            name=name,
            stack=stack,
            work_pool=work_pool,
            parameters=_parse_params(param),
            schedule=cron,
            tags=tag,
            src=src,
            force=force,
            dry_run=dry_run,
        )
    console.print(result.summary())
    for key, (old, new) in sorted(result.changes.items()):
        console.print(f"    {key}: {old!r} -> {new!r}")


def sync(  # noqa: PLR0917 - a typer command: options are parameters
    src: str = typer.Argument(".", help="Project directory (default: current)."),
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    bucket: str | None = typer.Option(None, "--bucket", help="Bucket (default: storage.bucket)."),
    folder: str | None = typer.Option(None, "--folder", help="Key prefix (default: storage)."),
    keep: bool = typer.Option(
        False, "--keep", help="Keep files deleted locally in the published tree."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Compare only; write nothing."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every changed file."),
) -> None:
    """Publish the project's code to S3 as one complete tree, sending only new content."""
    from oxeo_flows.cli._storage import run_sync

    with _storage_errors():
        run_sync(src, stack, bucket, folder, keep, dry_run, verbose, echo=console.print)


def pull(  # noqa: PLR0917 - a typer command: options are parameters
    directory: str = typer.Argument(".", help="Destination directory (default: current)."),
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    bucket: str | None = typer.Option(None, "--bucket", help="Bucket (default: storage.bucket)."),
    folder: str | None = typer.Option(None, "--folder", help="Key prefix (default: storage)."),
    block: str | None = typer.Option(
        None, "--block", help="A saved S3Bucket block to read bucket, folder, credentials from."
    ),
    keep: bool = typer.Option(False, "--keep", help="Do not remove files gone from S3."),
) -> None:
    """Download code from S3 into a directory, fetching only what changed (the pull step)."""
    from oxeo_flows.cli._storage import run_pull

    with _storage_errors():
        run_pull(directory, stack, bucket, folder, block, keep, echo=console.print)


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Our errors as ``Error: ...`` (exit 1); Ctrl-C / SIGTERM as what was done (exit 130)."""
    from oxeo_flows.cli._storage import interrupted, interruptible

    try:
        with friendly_errors(), interruptible():
            yield
    except KeyboardInterrupt as exc:
        err_console.print(interrupted(exc))
        raise typer.Exit(130) from None
