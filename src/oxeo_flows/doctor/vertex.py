"""Vertex AI settings: network by project number, reserved ranges, service account, run time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oxeo_flows.doctor.pools import uses_vertex
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings
    from oxeo_flows.stack import Stack

__all__ = ["check_vertex"]

_NUMBER_HINT = "gcloud projects describe PROJECT --format='value(projectNumber)'"


def check_vertex(stack: Stack, out: Findings) -> None:
    """The ``[vertex]`` / ``[gcp]`` settings Vertex AI jobs depend on."""
    if not uses_vertex(stack):
        return
    _check_network(stack, out)
    _check_ranges(stack, out)
    account = stack.vertex.service_account or stack.gcp.service_account
    if account:
        out.add("vertex", "service-account", "ok", account)
    else:
        out.add(
            "vertex",
            "service-account",
            "fail",
            "no service account: jobs would run as the default Compute Engine account "
            "(broad rights)",
            "set gcp.service-account (or vertex.service-account) to a dedicated account",
        )
    set_in = stack.origin("vertex", "max_run_time_hours")
    origin = (
        f"set in {set_in}"
        if set_in != "default"
        else "oxeo-flows default; Prefect alone would stop jobs after 1 h"
    )
    out.add("vertex", "max-run-time", "ok", f"{stack.vertex.max_run_time_hours} h ({origin})")


def _check_network(stack: Stack, out: Findings) -> None:
    network = stack.gcp.network
    if not network:
        if stack.vertex.private_network:
            out.add(
                "vertex",
                "network",
                "fail",
                "Vertex jobs are private by default but gcp.network is not set",
                "set gcp.network, gcp.project-number and gcp.reserved-ip-ranges, or "
                "vertex.private-network = false to opt out",
            )
        else:
            out.add(
                "vertex",
                "network",
                "warn",
                "vertex.private-network is false: jobs cannot reach private addresses "
                "(a private Dask scheduler)",
                "set gcp.network and remove vertex.private-network = false",
            )
        return
    try:
        spec = stack.gcp_network()
        path = spec.vertex_network if spec is not None else None
    except (ConfigError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        if "/" in network:  # a network path: the stack's own parser said what is wrong with it
            message = (
                f"{stack.describe('gcp', 'network')} is {network!r}: Vertex AI needs it "
                f"by project NUMBER ({first})"
            )
            fix = f"set gcp.network to the network's name and gcp.project-number ({_NUMBER_HINT})"
        else:
            message, fix = first, f"set gcp.project-number ({_NUMBER_HINT})"
        out.add("vertex", "network", "fail", message, fix)
    else:
        out.add("vertex", "network", "ok", f"jobs peer with {path}")


def _check_ranges(stack: Stack, out: Findings) -> None:
    ranges, network = stack.gcp.reserved_ip_ranges, stack.gcp.network
    if ranges and not network:
        out.add(
            "vertex",
            "reserved-ranges",
            "fail",
            f"gcp.reserved-ip-ranges {list(ranges)} are set without gcp.network; "
            "Vertex rejects reserved ranges without a network",
            "set gcp.network, or remove gcp.reserved-ip-ranges",
        )
    elif network and not ranges:
        out.add(
            "vertex",
            "reserved-ranges",
            "warn",
            "no gcp.reserved-ip-ranges: Vertex may use any range of the peering",
            "set gcp.reserved-ip-ranges to the range(s) your firewall admits",
        )
    elif ranges:
        out.add("vertex", "reserved-ranges", "ok", f"ranges {', '.join(ranges)}")
