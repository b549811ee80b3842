"""GCP network checks: network, subnetwork, reserved ranges, firewall, egress, peering.

The REST calls go through `oxeo_flows.gcp_api` (Google's client library, the endpoint rule of
``[gcp.endpoints]``); the firewall is evaluated as GCP does (`oxeo_flows.doctor.gcp_firewall`)
for the Dask VMs as dask-cloudprovider creates them: network tags ``http-server`` /
``https-server`` and the service account of ``dask.gcp.service-account`` (else
``gcp.service-account``, else the project's default Compute Engine account).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from oxeo_flows._loopback import is_loopback_endpoint
from oxeo_flows.doctor.gcp_context import GcpContext
from oxeo_flows.doctor.gcp_egress import check_egress
from oxeo_flows.doctor.gcp_firewall import Peer, Rule, Target, parse_rules, report_flow
from oxeo_flows.doctor.pools import uses_vertex
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from oxeo_flows.doctor.report import Findings
    from oxeo_flows.network import GcpNetwork
    from oxeo_flows.stack import Stack

__all__ = ["check_gcp_network"]

_DASK_PORTS = (8786, 8787)
#: Ports Dask VMs use between themselves: scheduler, dashboard and the random worker ports.
_CLUSTER_PORTS = (1024, 65535)


def check_gcp_network(stack: Stack, out: Findings) -> None:
    """Every GCP network check, in dependency order (a missing network stops the rest)."""
    if not stack.gcp.network or not (stack.dask.backend == "gcp" or uses_vertex(stack)):
        return
    ctx = _context(stack, out)
    if ctx is None:
        return
    network = _check_network(ctx, out)
    if network is None:
        return
    subnet = _check_subnetwork(ctx, out)
    sources = _check_ranges(ctx, out)
    if subnet and subnet.get("ipCidrRange"):
        sources = {str(subnet["ipCidrRange"]): f"subnetwork {ctx.spec.subnetwork}", **sources}
    _check_firewall(ctx, out, sources, subnet)
    check_egress(ctx, out, subnet)
    _check_peering(ctx, out, network)


def _context(stack: Stack, out: Findings) -> GcpContext | None:
    from oxeo_flows.gcp_api import adc_unavailable

    try:
        spec = stack.gcp_network()
    except (ConfigError, ValueError) as exc:
        out.add(
            "gcp-network",
            "network",
            "skip",
            f"the network settings are invalid ({str(exc).splitlines()[0]})",
            "fix the vertex/network checks above first",
        )
        return None
    assert spec is not None
    endpoints = stack.gcp.endpoints
    loopback = all(
        e and is_loopback_endpoint(e) for e in (endpoints.compute, endpoints.service_networking)
    )
    reason = None if loopback else adc_unavailable()
    if reason is not None:
        out.add(
            "gcp-network",
            "network",
            "skip",
            f"cannot query the Compute API: {reason}",
            "gcloud auth application-default login (or run where ADC exist) and run doctor again",
        )
        return None
    how = "loopback endpoints, anonymous" if loopback else "application default credentials"
    return GcpContext(stack, spec, how)


def _check_network(ctx: GcpContext, out: Findings) -> dict[str, Any] | None:
    from oxeo_flows.gcp_api import fetch

    spec = ctx.spec
    try:
        status, network = fetch(
            ctx.api("compute").networks().get(project=ctx.project, network=spec.network)
        )
    except Exception as exc:  # no credentials, no client library: the API cannot be asked
        status, network = 0, {"error": {"message": f"{type(exc).__name__}: {exc}"}}
    if status == 200:
        where = f"projects/{ctx.project}/global/networks/{spec.network}"
        out.add("gcp-network", "network", "ok", f"{where} exists ({ctx.how})")
        return network
    if status == 404:
        message = f"network {spec.network!r} does not exist in project {ctx.project!r}"
        fix = (
            f"gcloud compute networks create {spec.network} --project {ctx.project} "
            "--subnet-mode custom"
        )
    elif status == 0:
        message = f"the Compute API does not answer: {_error(network)}"
        fix = "check gcp.endpoints.compute, your credentials and your connectivity"
    else:
        message = f"reading network {spec.network!r}: HTTP {status} {_error(network)}"
        fix = "grant compute.networks.get (roles/compute.networkViewer) to the caller"
    out.add("gcp-network", "network", "fail", message, fix)
    return None


def _error(body: dict[str, Any]) -> str:
    return str(body.get("error", {}).get("message", body))[:300]


def _check_subnetwork(ctx: GcpContext, out: Findings) -> dict[str, Any] | None:
    from oxeo_flows.gcp_api import fetch

    spec = ctx.spec
    if not (spec.subnetwork and spec.region):
        if ctx.on_gce:
            out.add(
                "gcp-network",
                "subnetwork",
                "fail",
                "gcp.subnetwork is not set; Dask VMs need one",
                "set gcp.subnetwork (and gcp.region)",
            )
        return None
    request = (
        ctx.api("compute")
        .subnetworks()
        .get(project=ctx.project, region=spec.region, subnetwork=spec.subnetwork)
    )
    status, sub = fetch(request)
    if status == 200:
        out.add(
            "gcp-network",
            "subnetwork",
            "ok",
            f"{spec.subnetwork} ({sub.get('ipCidrRange')}) in {spec.region}",
        )
        return sub
    out.add(
        "gcp-network",
        "subnetwork",
        "fail",
        f"subnetwork {spec.subnetwork!r} not found in {spec.region} (HTTP {status})",
        f"gcloud compute networks subnets create {spec.subnetwork} --network {spec.network} "
        f"--region {spec.region} --range <CIDR> --enable-private-ip-google-access",
    )
    return None


def _check_ranges(ctx: GcpContext, out: Findings) -> dict[str, str]:
    """The reserved peering ranges that exist, as ``{cidr: label}``."""
    from oxeo_flows.gcp_api import fetch

    sources: dict[str, str] = {}
    for name in ctx.spec.reserved_ip_ranges:
        request = ctx.api("compute").globalAddresses().get(project=ctx.project, address=name)
        status, addr = fetch(request)
        if status == 200 and addr.get("address"):
            cidr = f"{addr['address']}/{addr.get('prefixLength', 32)}"
            sources[cidr] = f"reserved range {name}"
            out.add("gcp-network", f"range {name}", "ok", f"{cidr} ({addr.get('purpose', '?')})")
        else:
            out.add(
                "gcp-network",
                f"range {name}",
                "fail",
                f"reserved range {name!r} not found (HTTP {status})",
                f"gcloud compute addresses create {name} --global --purpose VPC_PEERING "
                f"--prefix-length 16 --network {ctx.spec.network}",
            )
    return sources


def _list_firewalls(ctx: GcpContext) -> tuple[int, list[dict[str, Any]]]:
    from oxeo_flows.gcp_api import fetch

    firewalls = ctx.api("compute").firewalls()
    request = firewalls.list(project=ctx.project)
    items: list[dict[str, Any]] = []
    while request is not None:
        status, page = fetch(request)
        if status != 200:
            return status, []
        items.extend(page.get("items", []))
        request = firewalls.list_next(request, page)
    return 200, items


def _check_firewall(
    ctx: GcpContext, out: Findings, sources: dict[str, str], subnet: dict[str, Any] | None
) -> None:
    status, items = _list_firewalls(ctx)
    if status != 200:
        out.add(
            "gcp-network",
            "firewall",
            "fail",
            f"cannot list firewall rules (HTTP {status})",
            "grant compute.firewalls.list to the caller",
        )
        return
    rules = parse_rules(items, ctx.spec.network)
    target = ctx.dask_vms()
    _check_world(out, rules, target, ctx.spec.network)
    if not sources:
        out.add(
            "gcp-network",
            "firewall",
            "skip",
            "no subnetwork or reserved range to check sources against",
            "set gcp.subnetwork / gcp.reserved-ip-ranges",
        )
    net = ctx.spec.network
    for cidr, label in sources.items():
        report_flow(
            out,
            rules,
            name=f"firewall {label}",
            peer=Peer(ipaddress.ip_network(cidr, strict=False)),
            label=label,
            target=target,
            ports=_DASK_PORTS,
            fix=f"gcloud compute firewall-rules create dask-from-{label.split()[-1]} "
            f"--network {net} --allow tcp:8786-8787 --source-ranges {cidr}"
            + (" --target-tags http-server" if target else ""),
        )
    if target is not None and subnet and subnet.get("ipCidrRange"):
        _check_intra_cluster(out, rules, target, str(subnet["ipCidrRange"]), net)


def _check_world(out: Findings, rules: list[Rule], target: Target | None, network: str) -> None:
    from oxeo_flows.doctor.gcp_firewall import evaluate

    world = Peer(ipaddress.ip_network("0.0.0.0/0"))
    decisions = evaluate(rules, direction="INGRESS", peer=world, target=target, ports=_DASK_PORTS)
    open_by = sorted({d.rule.name for d in decisions if d.allowed and d.rule is not None})
    if open_by:
        out.add(
            "gcp-network",
            "firewall-open",
            "fail",
            f"firewall rule(s) {', '.join(open_by)} on {network!r} admit tcp 8786-8787 from the "
            "whole internet",
            f"gcloud compute firewall-rules delete {open_by[0]} (admit only the ranges below)",
        )


def _check_intra_cluster(
    out: Findings, rules: list[Rule], target: Target, cidr: str, network: str
) -> None:
    """Scheduler, workers and nannies talk on 8786 and random ports: all TCP among the VMs."""
    from oxeo_flows.doctor.gcp_firewall import blocked, evaluate

    peer = Peer(ipaddress.ip_network(cidr, strict=False), target.tags, target.service_account)
    report_flow(
        out,
        rules,
        name="intra-cluster",
        peer=peer,
        label="the other Dask VMs",
        target=target,
        ports=_CLUSTER_PORTS,
        fix=f"gcloud compute firewall-rules create dask-intra-cluster --network {network} "
        "--allow tcp --source-tags http-server --target-tags http-server",
    )
    egress = blocked(
        evaluate(rules, direction="EGRESS", peer=peer, target=target, ports=_CLUSTER_PORTS)
    )
    if egress:
        first = egress[0]
        out.add(
            "gcp-network",
            "intra-cluster-egress",
            "fail",
            f"{first.by()} refuses tcp {first.ports()} from the Dask VMs to {cidr}",
            f"remove or narrow the egress deny rule {first.rule.name if first.rule else ''!r}, "
            f"or add a higher-priority egress allow for tcp to {cidr}",
        )


def _check_peering(ctx: GcpContext, out: Findings, network: dict[str, Any]) -> None:
    from oxeo_flows.gcp_api import fetch

    spec = ctx.spec
    number = spec.host_project_number if spec.host_project else spec.project_number
    if not number:
        out.add(
            "gcp-network",
            "peering",
            "skip",
            "no project number, so the peering cannot be looked up",
            "set gcp.project-number",
        )
        return
    request = (
        ctx.api("servicenetworking")
        .services()
        .connections()
        .list(
            parent="services/servicenetworking.googleapis.com",
            network=f"projects/{number}/global/networks/{spec.network}",
        )
    )
    status, conns = fetch(request)
    connections = conns.get("connections", []) if status == 200 else []
    ranges = ",".join(spec.reserved_ip_ranges) or "<RANGE>"
    if not connections:
        out.add(
            "gcp-network",
            "peering",
            "fail",
            f"no private services connection on {spec.network!r} (HTTP {status})",
            f"gcloud services vpc-peerings connect --service servicenetworking.googleapis.com "
            f"--network {spec.network} --ranges {ranges}",
        )
        return
    _peering_state(out, ctx.spec, connections[0], network, ranges)


def _peering_state(
    out: Findings, spec: GcpNetwork, conn: dict[str, Any], network: dict[str, Any], ranges: str
) -> None:
    missing = [r for r in spec.reserved_ip_ranges if r not in conn.get("reservedPeeringRanges", [])]
    name = conn.get("peering", "servicenetworking-googleapis-com")
    peer_cmd = (
        "gcloud services vpc-peerings update --service servicenetworking.googleapis.com "
        f"--network {spec.network} --ranges {ranges}"
    )
    state = next(
        (p.get("state") for p in network.get("peerings", []) if p.get("name") == name), None
    )
    if state != "ACTIVE":
        out.add(
            "gcp-network",
            "peering",
            "fail",
            f"peering {name!r} is {state or 'missing'}, not ACTIVE",
            f"{peer_cmd} --force",
        )
    elif missing:
        out.add(
            "gcp-network",
            "peering",
            "fail",
            f"peering {name!r} is ACTIVE but does not include range(s) {', '.join(missing)}",
            peer_cmd,
        )
    else:
        out.add("gcp-network", "peering", "ok", f"{name} is ACTIVE")
