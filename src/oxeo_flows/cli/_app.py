"""The ``oxeo-flows`` typer application: every command (built on first use of ``cli.app``)."""

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
        False,
        "--version",
        help="Show the version and exit.",
        callback=_version_callback,
        is_eager=True,
    ),
) -> None:
    """Reusable, private-by-default infrastructure for Prefect 3 pipelines."""


app.command("demo")(_demo.demo)
app.add_typer(_stack.app, name="stack")
# --- sub-commands of capabilities: one line each below ---
from oxeo_flows.cli import deploy as _deploy_cli  # noqa: E402

app.command("deploy")(_deploy_cli.deploy)
app.command("sync")(_deploy_cli.sync)
app.command("pull")(_deploy_cli.pull)
from oxeo_flows.cli import secrets as _secrets_cli  # noqa: E402

app.add_typer(_secrets_cli.app, name="secrets")
from oxeo_flows.cli import clusters as _clusters_cli  # noqa: E402

app.add_typer(_clusters_cli.app, name="clusters")
from oxeo_flows.cli import vertex as _vertex_cli  # noqa: E402

app.add_typer(_vertex_cli.app, name="vertex")
from oxeo_flows.cli import docker as _docker_cli  # noqa: E402

app.add_typer(_docker_cli.app, name="docker")
from oxeo_flows.cli import apply as _apply_cli  # noqa: E402

app.command("apply")(_apply_cli.apply)
app.command("doctor")(_apply_cli.doctor)
