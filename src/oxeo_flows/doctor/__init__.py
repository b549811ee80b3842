"""Preflight checks of a stack: ``oxeo-flows doctor``.

`run_doctor` checks, before anything costs money or hangs, that:

- the stack validates and the extras its pool kinds need are installed (`.pools`);
- the Prefect API answers, does not send credentials in clear text or without verifying TLS,
  and runs a compatible server version (`.prefect`);
- Vertex AI settings are consistent (network by project *number*, reserved ranges only with a
  network, a service account, a maximum run time) and each vertex-ai job spec builds;
- Dask is private (TLS on, no public IPs) and has a start deadline (`.dask`);
- for GCP, when credentials (or loopback endpoints in ``gcp.endpoints``) are available
  (`.gcp_network`): the network and subnetwork exist; the firewall, evaluated as GCP does it
  (direction, priority, allow vs deny, target tags and service accounts of the Dask VMs,
  disabled rules; `.gcp_firewall`), admits tcp 8786-8787 from the Vertex reserved ranges and
  the subnet and all TCP among the Dask VMs; private VMs have Cloud NAT / Private Google Access
  for their image, whose Artifact Registry repository exists and is readable by the VMs'
  service account (`.gcp_egress`); the private services peering is ACTIVE;
- the storage bucket exists and is writable (a tiny probe object is written, then removed);
- every secret in ``secrets.required`` resolves (values are never shown);
- Docker on EC2: the instance-metadata hop-limit trap is explained.

Each `Check` is ``ok``, ``warn``, ``fail`` or ``skip`` (with the reason), with a one-line fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oxeo_flows.doctor.report import Check, DoctorReport, Findings
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["Check", "DoctorReport", "run_doctor"]


def _steps() -> list[tuple[str, Callable[[Stack, Findings], None]]]:
    from oxeo_flows.doctor.dask import check_dask
    from oxeo_flows.doctor.gcp_network import check_gcp_network
    from oxeo_flows.doctor.pools import check_pools
    from oxeo_flows.doctor.prefect import check_prefect
    from oxeo_flows.doctor.secrets import check_secrets
    from oxeo_flows.doctor.storage import check_storage
    from oxeo_flows.doctor.vertex import check_vertex

    return [
        ("pools", check_pools),
        ("prefect", check_prefect),
        ("vertex", check_vertex),
        ("dask", check_dask),
        ("gcp-network", check_gcp_network),
        ("storage", check_storage),
        ("secrets", check_secrets),
    ]


def run_doctor(stack: Stack | str | None = None) -> DoctorReport:
    """Run every check that applies to the stack.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The report; ``report.ok`` is False when any check failed.

    Example:
        ```python
        from oxeo_flows.doctor import run_doctor

        report = run_doctor("prod")
        for check in report.checks:
            print(check.status, check.group, check.name, check.message, check.fix or "")
        ```
    """
    from oxeo_flows.stack import resolve_stack

    out = Findings()
    try:
        the_stack = resolve_stack(stack)
    except ConfigError as exc:
        out.add("stack", "validates", "fail", str(exc), "fix the key named above in the stack file")
        return DoctorReport(None, out.checks)
    where = f" ({the_stack.file})" if the_stack.file else " (built-in)"
    out.add("stack", "validates", "ok", f"stack {the_stack.name!r} is valid{where}")
    for group, step in _steps():
        try:
            step(the_stack, out)
        except Exception as exc:  # a bug in one check must not hide the others
            out.add(
                group,
                "internal",
                "fail",
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "report this at the oxeo-flows issue tracker",
            )
    return DoctorReport(the_stack.name, out.checks)
