"""``oxeo-flows apply`` and ``oxeo-flows doctor``: declare infrastructure, check it before use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from oxeo_flows.apply._calls import DEFAULT_TIMEOUT
from oxeo_flows.cli._common import console, err_console, styled, table

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from oxeo_flows.apply import ApplyPlan
    from oxeo_flows.doctor import DoctorReport

#: Exit code of ``apply --check`` when the Prefect API differs from the stack.
EXIT_DRIFT = 2

_ACTION_STYLE = {"create": "green", "update": "yellow", "unchanged": "dim"}
#: How a failed apply's table marks each item's status (unchanged items get no mark).
_STATUS_MARK = {
    "applied": (" ✓", "green"),
    "unknown": (" ? unknown", "bold yellow"),
    "not applied": (" ✗ not applied", "red"),
}
_FAILED_TITLE = "plan (✓ applied, ? unknown: sent but no answer, ✗ not applied)"
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _text(value: Any) -> str:
    """A value as shown in a plan: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


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


def _changes(item: Any) -> Text:
    from rich.text import Text

    if item.action == "create":
        lines = [
            f"{_label(path)} = {_text(_compact(new))}"
            for path, (_, new) in item.changes.items()
            if _compact(new) not in (None, {}, [])
        ]
    else:
        lines = [
            f"{_label(path)}: {_text(old)} → {_text(new)}"
            for path, (old, new) in item.changes.items()
        ]
    out = Text("\n".join(lines))
    if item.note:
        out.append(("\n" if lines else "") + f"({item.note})", style="dim")
    return out


def _plan_table(plan: ApplyPlan, *, title: str, failed: bool = False) -> Table:
    out = table(title, "action", "object", "changes")
    for item in plan.items:
        action = styled((item.action, _ACTION_STYLE[item.action]))
        mark = _STATUS_MARK.get(item.status)
        if mark is not None and (failed or item.status == "applied"):
            action.append(mark[0], style=mark[1])
        obj = styled(f"{item.kind} ", (item.name, "bold"))
        if item.type != item.kind:
            obj.append(f"\n{item.type}", style="dim")
        out.add_row(action, obj, _changes(item))
    return out


def _emit_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, sort_keys=False))


def apply(  # noqa: PLR0917 - a typer command: options are parameters
    stack: str | None = typer.Option(None, "--stack", "-s", help="Stack name (default: active)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; write nothing."),
    check: bool = typer.Option(
        False, "--check", help="Like --dry-run, but exit 2 when anything would change (for CI)."
    ),
    adopt: bool = typer.Option(
        False, "--adopt", help="Take over existing objects that oxeo-flows did not create."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT,
        "--timeout",
        metavar="SECONDS",
        help="Give up on a Prefect API call that gets no answer after this long.",
    ),
) -> None:
    """Create or update the work pools, blocks and variables the stack declares.

    Exit codes: 0 applied or unchanged, 1 validation or API error, 2 drift found with --check.
    After an API failure the table marks each item: ✓ applied, ? unknown (the write was sent
    but no answer came back), ✗ not applied; running apply again is always safe.
    """
    from oxeo_flows.apply import ApplyPlan, apply_stack
    from oxeo_flows.errors import ApplyError, OxeoFlowsError

    read_only = dry_run or check
    try:
        plan = apply_stack(stack, dry_run=read_only, adopt=adopt, timeout=timeout)
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
                console.print(_plan_table(partial, title=_FAILED_TITLE, failed=True))
            err_console.print(styled(("Error:", "bold red"), f" {exc}"))
        raise typer.Exit(1) from None
    if as_json:
        _emit_json(plan.to_dict())
    else:
        title = f"stack {plan.stack!r}: " + ("plan (dry run)" if read_only else "plan")
        console.print(_plan_table(plan, title=title))
        console.print(plan.summary())
    if check and plan.has_drift:
        if not as_json:
            err_console.print(
                "Drift: the Prefect API differs from the stack. Run `oxeo-flows apply` to fix it."
            )
        raise typer.Exit(EXIT_DRIFT)


def _doctor_table(report: DoctorReport) -> Table:
    title = f"doctor: stack {report.stack!r}" if report.stack else "doctor"
    out = table(title, "status", ("check", "cyan"), "finding / fix")
    for c in report.checks:
        finding = styled(c.message)
        if c.fix:
            finding.append("\nfix:", style="bold")
            finding.append(f" {c.fix}")
        out.add_row(styled((c.status, _STATUS_STYLE[c.status])), f"{c.group}: {c.name}", finding)
    return out


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
        console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if not report.ok:
        raise typer.Exit(1)
