"""Vertex AI settings: network by project number, reserved ranges, service account, run time.

With ``vertex.persistent-resource-id`` set, the persistent resource is read from the Vertex AI
API (``gcp.endpoints.aiplatform``, else the region's ``REGION-aiplatform.googleapis.com``; a
loopback endpoint is dialed in plaintext, anonymously): it must exist, be RUNNING and have a
resource pool of the job's machine type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oxeo_flows._loopback import is_loopback_endpoint
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
    check_persistent_resource(stack, out)


#: Persistent resource states that pass by themselves (warn: jobs wait; fail: jobs cannot run).
_WAIT_STATES = frozenset({"PROVISIONING", "STOPPING", "REBOOTING", "UPDATING", "STATE_UNSPECIFIED"})
_RPC_TIMEOUT = 30.0


def persistent_resource_client(endpoint: str | None, region: str) -> Any:
    """A ``PersistentResourceServiceClient`` for ``gcp.endpoints.aiplatform``.

    Args:
        endpoint: ``HOST:PORT`` of Vertex AI, or None for ``REGION-aiplatform.googleapis.com``.
            A loopback endpoint gets a plaintext channel and anonymous credentials; anything
            else TLS and Application Default Credentials.
        region: The Vertex AI region (names the regional endpoint).

    Returns:
        A ``google.cloud.aiplatform_v1.PersistentResourceServiceClient`` (close it after use).
    """
    from google.cloud.aiplatform_v1.services.persistent_resource_service import (
        PersistentResourceServiceClient,
    )

    target = endpoint.split("://", 1)[-1].rstrip("/") if endpoint else None
    if target is not None and is_loopback_endpoint(target):
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.aiplatform_v1.services.persistent_resource_service.transports import (  # type: ignore[attr-defined]
            PersistentResourceServiceGrpcTransport,
        )

        transport = PersistentResourceServiceGrpcTransport(
            host=target,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            channel=grpc.insecure_channel(target),
        )
        return PersistentResourceServiceClient(transport=transport)
    from google.api_core.client_options import ClientOptions

    options = ClientOptions(api_endpoint=target or f"{region}-aiplatform.googleapis.com")
    return PersistentResourceServiceClient(client_options=options)


def check_persistent_resource(stack: Stack, out: Findings) -> None:
    """``persistent-resource-id`` of each Vertex job: it exists, is RUNNING, fits the job.

    The ``[vertex]`` job's check is ``vertex/persistent-resource``; a ``vertex-ai`` section of
    ``[pools]`` with its own id gives ``vertex/persistent-resource pools.NAME``. Jobs without
    the key ask nothing.
    """
    import warnings

    from oxeo_flows.doctor.pools import _pools
    from oxeo_flows.errors import OxeoFlowsError
    from oxeo_flows.pools.kind_vertex import vertex_job

    seen: set[tuple[str, str | None, str]] = set()
    for label, pool, kind in _pools(stack):
        if kind.type != "vertex-ai":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                job = vertex_job(stack=stack, pool=pool)
        except OxeoFlowsError:
            continue  # the "job" check of doctor.pools says what is wrong
        rid = job.persistent_resource_id
        if not rid or (rid, job.region, job.machine_type) in seen:
            continue
        seen.add((rid, job.region, job.machine_type))
        if pool is None:
            check, section = "persistent-resource", "vertex"
            key = stack.describe("vertex", "persistent_resource_id")
        else:
            check, section = f"persistent-resource {label}", label
            key = f"{label}.persistent-resource-id"
        _check_resource(
            stack, out, (check, section, key), rid=rid, region=job.region, machine=job.machine_type
        )


def _check_resource(
    stack: Stack,
    out: Findings,
    names: tuple[str, str, str],
    *,
    rid: str,
    region: str | None,
    machine: str,
) -> None:
    """One persistent resource; ``names`` is (check name, stack section, key description)."""
    from oxeo_flows.gcp_api import adc_unavailable

    check, section, key = names

    project = stack.gcp.project
    if not project or not region:
        out.add(
            "vertex",
            check,
            "skip",
            f"persistent resource {rid!r} cannot be named without gcp.project and a region",
            "set gcp.project and gcp.region (or vertex.region)",
        )
        return
    name = f"projects/{project}/locations/{region}/persistentResources/{rid}"
    endpoint = stack.gcp.endpoints.aiplatform
    loopback = bool(endpoint and is_loopback_endpoint(endpoint))
    reason = None if loopback else adc_unavailable()
    if reason is not None:
        out.add(
            "vertex",
            check,
            "skip",
            f"cannot read {name}: {reason}",
            "gcloud auth application-default login (or run where ADC exist) and run doctor again",
        )
        return
    try:
        from google.api_core import exceptions as api_errors

        client = persistent_resource_client(endpoint, region)
    except ImportError as exc:
        out.add(
            "vertex",
            check,
            "skip",
            f"cannot read {name}: {exc}",
            "pip install 'oxeo-flows[gcp]'",
        )
        return
    try:
        with client:
            resource = client.get_persistent_resource(name=name, timeout=_RPC_TIMEOUT)
    except api_errors.NotFound:
        out.add(
            "vertex",
            check,
            "fail",
            f"{key} is {rid!r}, but {name} does not exist: every run would be refused",
            f"gcloud ai persistent-resources create --persistent-resource-id={rid} "
            f"--project={project} --region={region} --resource-pool-spec="
            f"replica-count=1,machine-type={machine}; or unset "
            f"{section}.persistent-resource-id",
        )
        return
    except Exception as exc:  # permission, connectivity: the API cannot be asked
        out.add(
            "vertex",
            check,
            "fail",
            f"reading {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            "check gcp.endpoints.aiplatform, your connectivity and that the caller has "
            "aiplatform.persistentResources.get (roles/aiplatform.viewer)",
        )
        return
    _check_state(check, section, name, resource, out)
    _check_pool_machine(check, section, name, resource, machine_type=machine, out=out)


def _check_state(check: str, section: str, name: str, resource: Any, out: Findings) -> None:
    state = type(resource).State(resource.state).name
    if state == "RUNNING":
        out.add("vertex", check, "ok", f"{name} is RUNNING")
    elif state in _WAIT_STATES:
        out.add(
            "vertex",
            check,
            "warn",
            f"{name} is {state}, not RUNNING: runs wait (or fail) until it is",
            f"wait until it is RUNNING (gcloud ai persistent-resources describe {name})",
        )
    else:
        error = resource.error.message if resource.error and resource.error.message else ""
        detail = f" ({error})" if error else ""
        out.add(
            "vertex",
            check,
            "fail",
            f"{name} is {state}{detail}: runs on it cannot start",
            f"gcloud ai persistent-resources delete {name}, create it again; or unset "
            f"{section}.persistent-resource-id",
        )


def _check_pool_machine(
    check: str, section: str, name: str, resource: Any, *, machine_type: str, out: Findings
) -> None:
    pools = [(p.id, p.machine_spec.machine_type) for p in resource.resource_pools]
    match = [pool for pool, machine in pools if machine == machine_type]
    if match:
        out.add(
            "vertex",
            f"{check} machine-type",
            "ok",
            f"resource pool {match[0]!r} has the job's machine type {machine_type}",
        )
        return
    have = ", ".join(f"{pool} ({machine})" for pool, machine in pools) or "none"
    out.add(
        "vertex",
        f"{check} machine-type",
        "warn",
        f"no resource pool of {name} has the job's machine type {machine_type} "
        f"(pools: {have}): Vertex refuses such jobs",
        f"set {section}.machine-type to a pool's machine type, or add a resource pool of "
        f"{machine_type} (gcloud ai persistent-resources update)",
    )


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
