"""Shared helpers for CLI commands: consoles, tables and error reporting.

Output is literal: values are never read as Rich markup or emoji codes (``oxeo-flows[aws]``,
a ``[stacks.prod]`` source and ``:secret:`` in an ARN print as written); style comes only from
`styled` / `rich.text.Text`. Tables fold long values instead of cutting them, and when the
output is not a terminal (a pipe, a file, CI) lines are as long as their content unless
``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import typer

from oxeo_flows.errors import OxeoFlowsError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = ["console", "err_console", "friendly_errors", "styled", "table"]

#: Line width when the output is not a terminal and ``COLUMNS`` is not set.
PIPE_WIDTH = 4096


def _width(stream: Any) -> int | None:
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(stream, "isatty", None)
    return None if callable(isatty) and isatty() else PIPE_WIDTH


class _LiteralConsole:
    """A Rich console bound to the *current* stdout / stderr, with markup and emoji off."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr

    def _console(self) -> Console:
        from rich.console import Console

        stream = sys.stderr if self._stderr else sys.stdout
        return Console(
            file=stream,
            width=_width(stream),
            markup=False,
            emoji=False,
            highlight=False,
            stderr=self._stderr,
        )

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print like `rich.console.Console.print`; strings are shown literally.

        Plain strings are written as they are, without importing Rich (``oxeo-flows sync``
        stays cheap); tables and styled text go through a Rich console.
        """
        kwargs.pop("markup", None)
        kwargs.pop("highlight", None)
        kwargs.pop("emoji", None)
        if not kwargs and all(type(o) is str for o in objects):
            stream = sys.stderr if self._stderr else sys.stdout
            stream.write(" ".join(objects) + "\n")
            return
        self._console().print(*objects, **kwargs)


console = _LiteralConsole(stderr=False)
err_console = _LiteralConsole(stderr=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Join literal text, each part plain or ``(text, style)``."""
    from rich.text import Text

    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(part[0], style=part[1])
        else:
            text.append(part)
    return text


def table(title: str, *columns: str | tuple[str, str]) -> Table:
    """A left-titled table whose columns fold long values (never cut with an ellipsis)."""
    from rich.table import Table
    from rich.text import Text

    out = Table(title=Text(title), title_justify="left")
    for column in columns:
        name, style = column if isinstance(column, tuple) else (column, "")
        out.add_column(name, style=style, overflow="fold")
    return out


#: Set to 1 to see the traceback of an unexpected error instead of the one-line message.
DEBUG_ENV = "OXEO_FLOWS_DEBUG"


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn errors into a red message and exit code 1, without a traceback.

    Our own errors say what was wrong and how to fix it. Anything else is a bug in
    oxeo-flows (bad input should never get that far): it is shown in one paragraph, with
    loaded secret values masked, and its traceback only with ``OXEO_FLOWS_DEBUG=1``.
    """
    try:
        yield
    except OxeoFlowsError as exc:
        err_console.print(styled(("Error:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise
    except Exception as exc:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        from oxeo_flows._redact import redact

        text = redact(f"{type(exc).__name__}: {exc}").replace("\n", " ")
        err_console.print(
            styled(
                ("Error:", "bold red"),
                f" unexpected {text}. This is a bug in oxeo-flows, not in your input: rerun "
                f"with {DEBUG_ENV}=1 to see the traceback, and report it.",
            )
        )
        raise typer.Exit(1) from None
