"""The ``oxeo-flows`` command line."""

from __future__ import annotations

import typer

from oxeo_flows.cli import _demo, _stack

app = typer.Typer(
    name="oxeo-flows",
    help="Reusable, private-by-default infrastructure for Prefect 3 pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"oxeo-flows {version('oxeo-flows')}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Show the version and exit.", callback=_version_callback,
        is_eager=True,
    ),
) -> None:
    """Reusable, private-by-default infrastructure for Prefect 3 pipelines."""


app.command("demo")(_demo.demo)
app.add_typer(_stack.app, name="stack")
# --- sub-commands of capabilities: one line each below ---


def main() -> None:
    """Entry point of the ``oxeo-flows`` script."""
    app()
