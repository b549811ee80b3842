"""``oxeo-flows apply`` and ``oxeo-flows doctor``: declare infrastructure, check it before use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from oxeo_flows.cli._common import console, err_console

if TYPE_CHECKING:
    from oxeo_flows.apply import ApplyPlan
    from oxeo_flows.doctor import DoctorReport

#: Exit code of ``apply --check`` when the Prefect API differs from the stack.
EXIT_DRIFT = 2

_ACTION_STYLE = {"create": "green", "update": "yellow", "unchanged": "dim"}
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact(value: Any) -> Any:
    """Drop None entries from nested mappings (a new block's unset fields)."""
    if isinstance(value, dict):
        out = {k: _compact(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    return value


def _label(path: str) -> str:
    """``variables.machine_type.default`` -> ``machine_type`` (a pool's job default)."""
    if path.startswith("variables.") and path.endswith(".default"):
        return path[len("variables.") : -len(".default")]
    return path


def _plan_table(plan: ApplyPlan, *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("action", no_wrap=True)
    table.add_column("object", no_wrap=True)
    table.add_column("changes", ratio=1)
    for item in plan.items:
        style = _ACTION_STYLE[item.action]
        if item.action == "create":
            lines = [
                f"{escape(_label(path))} = {escape(_short(_compact(new)))}"
                for path, (_, new) in item.changes.items()
                if _compact(new) not in (None, {}, [])
            ]
        else:
            lines = [
                f"{escape(_label(path))}: {escape(_short(old))} → {escape(_short(new))}"
                for path, (old, new) in item.changes.items()
            ]
        if item.note:
            lines.append(f"[dim]({escape(item.note)})[/]")
        action = f"[{style}]{item.action}[/]"
        if item.applied:
            action += " [green]✓[/]"
        obj = f"{item.kind} [bold]{escape(item.name)}[/]"
        if item.type != item.kind:
            obj += f"\n[dim]{escape(item.type)}[/]"
        table.add_row(action, obj, "\n".join(lines))
    return table


def _emit_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, sort_keys=False))


def apply(
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; write nothing."),
    check: bool = typer.Option(
        False, "--check", help="Like --dry-run, but exit 2 when anything would change (for CI)."
    ),
    adopt: bool = typer.Option(
        False, "--adopt", help="Take over existing objects that oxeo-flows did not create."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Create or update the work pools, blocks and variables the stack declares.

    Exit codes: 0 applied or unchanged, 1 validation or API error, 2 drift found with --check.
    """
    from oxeo_flows.apply import ApplyPlan, apply_stack
    from oxeo_flows.errors import ApplyError, OxeoFlowsError

    read_only = dry_run or check
    try:
        plan = apply_stack(stack, dry_run=read_only, adopt=adopt)
    except OxeoFlowsError as exc:
        partial = exc.plan if isinstance(exc, ApplyError) else None
        if not isinstance(partial, ApplyPlan):
            partial = None
        if as_json:
            payload: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
            if partial is not None:
                payload["plan"] = partial.to_dict()
            _emit_json(payload)
        else:
            if partial is not None and partial.items:
                console.print(_plan_table(partial, title="plan (✓ = applied)"))
            err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        _emit_json(plan.to_dict())
    else:
        title = f"stack {plan.stack!r}: " + ("plan (dry run)" if read_only else "plan")
        console.print(_plan_table(plan, title=title))
        console.print(escape(plan.summary()), highlight=False)
    if check and plan.has_drift:
        if not as_json:
            err_console.print(
                "Drift: the Prefect API differs from the stack. Run `oxeo-flows apply` to fix it.",
                highlight=False,
            )
        raise typer.Exit(EXIT_DRIFT)


def _doctor_table(report: DoctorReport) -> Table:
    title = f"doctor: stack {report.stack!r}" if report.stack else "doctor"
    table = Table(title=title, title_justify="left")
    table.add_column("status", no_wrap=True)
    table.add_column("check", style="cyan")
    table.add_column("finding / fix")
    for c in report.checks:
        text = escape(c.message)
        if c.fix:
            text += f"\n[bold]fix:[/] {escape(c.fix)}"
        table.add_row(
            f"[{_STATUS_STYLE[c.status]}]{c.status}[/]", f"{c.group}: {escape(c.name)}", text
        )
    return table


def doctor(
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check the stack before it costs money: Prefect, Vertex, Dask, network, storage, secrets.

    Exit code 1 when any check fails (warnings and skips do not fail).
    """
    from oxeo_flows.doctor import run_doctor

    report = run_doctor(stack)
    if as_json:
        _emit_json(report.to_dict())
    else:
        console.print(_doctor_table(report))
        counts = report.counts()
        console.print(
            ", ".join(f"{n} {s}" for s, n in counts.items() if n),
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(1)
