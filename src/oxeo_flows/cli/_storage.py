"""``oxeo-flows sync`` and ``pull``: the work, and a fast path that runs them without typer.

`oxeo_flows.cli.main` hands plain ``sync`` / ``pull`` command lines to `fast_main` before it
imports typer, Rich or the other commands; the stack comes from `cached_view` (the one
resolver's answer, cached). Anything the fast path does not recognise (``--help``, a typo, an
unknown option) is left to typer, which owns the help and the usage errors. The typer commands
in `oxeo_flows.cli.deploy` call the same `run_sync` / `run_pull`, so both print the same.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from oxeo_flows.errors import OxeoFlowsError

__all__ = ["fast_main", "interruptible", "run_pull", "run_sync"]

# option -> (parameter, takes a value)
_SYNC = {
    "--stack": ("stack", True),
    "-s": ("stack", True),
    "--bucket": ("bucket", True),
    "--folder": ("folder", True),
    "--keep": ("keep", False),
    "--dry-run": ("dry_run", False),
    "--verbose": ("verbose", False),
    "-v": ("verbose", False),
}
_PULL = {
    "--stack": ("stack", True),
    "-s": ("stack", True),
    "--bucket": ("bucket", True),
    "--folder": ("folder", True),
    "--block": ("block", True),
    "--keep": ("keep", False),
}


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def run_sync(  # noqa: PLR0917 - the command's options
    src: str,
    stack: str | None,
    bucket: str | None,
    folder: str | None,
    keep: bool,
    dry_run: bool,
    verbose: bool,
    echo: Callable[[str], None] = _out,
) -> None:
    """Sync ``src`` and print the summary (and with ``verbose`` every change)."""
    from oxeo_flows.storage.settings import cached_view
    from oxeo_flows.storage.sync import sync_with

    report = sync_with(
        cached_view(stack),
        src,
        bucket=bucket,
        folder=folder,
        delete=False if keep else None,
        dry_run=dry_run,
    )
    echo(report.summary())
    if verbose:
        for rel in report.uploaded:
            echo(f"  + {rel}")
        for rel in report.deleted:
            echo(f"  - {rel}")


def run_pull(  # noqa: PLR0917 - the command's options
    directory: str,
    stack: str | None,
    bucket: str | None,
    folder: str | None,
    block: str | None,
    keep: bool,
    echo: Callable[[str], None] = _out,
) -> None:
    """Pull into ``directory`` and print what changed."""
    from oxeo_flows.storage.pull import pull_with
    from oxeo_flows.storage.settings import cached_view

    view = cached_view(stack) if stack is not None or (bucket is None and block is None) else None
    result = pull_with(view, bucket, folder, block=block, directory=directory, delete=not keep)
    echo(
        f"s3://{result['bucket']}/{result['folder']}".rstrip("/")
        + f" -> {result['directory']}: downloaded {result['downloaded']}, "
        f"{result['skipped']} unchanged, removed {result['deleted']}"
    )


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM stops a sync like Ctrl-C: pending uploads cancelled, nothing published."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(exc: KeyboardInterrupt) -> str:
    """What to tell the user after Ctrl-C / SIGTERM."""
    notes = getattr(exc, "__notes__", None)
    return notes[-1] if notes else "Interrupted."


def _parse(argv: Sequence[str], spec: dict[str, tuple[str, bool]]) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    positional: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg == "--":
            positional.extend(items)
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name not in spec:
                return None
            param, takes = spec[name]
            if takes and not eq:
                following = next(items, None)
                if following is None:
                    return None
                value = following
            elif not takes and eq:
                return None
            values[param] = value if takes else True
        else:
            positional.append(arg)
    if len(positional) > 1:
        return None
    values["path"] = positional[0] if positional else "."
    return values


def fast_main(argv: Sequence[str]) -> int | None:
    """Run ``sync`` / ``pull`` without typer; None when typer should handle ``argv``."""
    if not argv or argv[0] not in {"sync", "pull"}:
        return None
    command, rest = argv[0], argv[1:]
    if any(a in {"--help", "-h", "--version"} for a in rest):
        return None
    values = _parse(rest, _SYNC if command == "sync" else _PULL)
    if values is None:
        return None
    try:
        with interruptible():
            if command == "sync":
                run_sync(
                    values["path"],
                    values.get("stack"),
                    values.get("bucket"),
                    values.get("folder"),
                    keep=bool(values.get("keep")),
                    dry_run=bool(values.get("dry_run")),
                    verbose=bool(values.get("verbose")),
                )
            else:
                run_pull(
                    values["path"],
                    values.get("stack"),
                    values.get("bucket"),
                    values.get("folder"),
                    values.get("block"),
                    keep=bool(values.get("keep")),
                )
    except OxeoFlowsError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    except KeyboardInterrupt as exc:
        sys.stderr.write(interrupted(exc) + "\n")
        return 130
    return 0
