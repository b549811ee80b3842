"""Find and delete Dask VMs left behind, by the labels (GCE) and tags (EC2) every one carries.

A cluster is closed when its flow run ends; a process killed with SIGKILL, a lost machine or
a crashed runner can still leave VMs running (until the scheduler's idle / no-client timeout
shuts them down). They carry ``oxeo-flows-cluster`` (GCE label) or ``oxeo-flows:cluster`` (EC2
tag) with the cluster name, the flow run id and the stack name (``oxeo-flows-stack`` /
``oxeo-flows:stack``). Listing and cleanup look at one stack's VMs only (its label / tag),
unless asked for every stack.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from oxeo_flows._extras import require
from oxeo_flows.clusters._vm import LABEL_CLUSTER, LABEL_FLOW_RUN, LABEL_STACK
from oxeo_flows.clusters.ec2 import TAG_CLUSTER, TAG_FLOW_RUN, TAG_STACK
from oxeo_flows.errors import ClusterError, ConfigError, OxeoFlowsError
from oxeo_flows.stack import Stack, resolve_stack

__all__ = ["ClusterVM", "delete_cluster_vms", "list_cluster_vms", "parse_age"]

_AGE = re.compile(r"^\s*(?P<n>[0-9]+(\.[0-9]+)?)\s*(?P<unit>s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LIVE_EC2 = ["pending", "running", "stopping", "stopped"]


@dataclass(frozen=True)
class ClusterVM:
    """One VM of an oxeo-flows Dask cluster."""

    cloud: str
    id: str
    name: str
    location: str
    cluster: str
    flow_run: str
    created: dt.datetime | None
    state: str
    stack: str = ""

    def age(self, now: dt.datetime | None = None) -> dt.timedelta | None:
        """Time since the VM was created."""
        if self.created is None:
            return None
        return (now or dt.datetime.now(dt.UTC)) - self.created


def parse_age(text: str) -> dt.timedelta:
    """Parse ``90``, ``30m``, ``2h``, ``1d``, ``1w`` into a duration.

    Raises:
        ConfigError: The text is not a duration.
    """
    match = _AGE.match(text)
    if not match:
        msg = f"{text!r} is not a duration; use e.g. 30m, 2h, 1d (s, m, h, d, w)"
        raise ConfigError(msg)
    return dt.timedelta(seconds=float(match.group("n")) * _UNITS[match.group("unit") or "s"])


def _clouds(stack: Stack, clouds: list[str] | None) -> list[str]:
    if clouds:
        for cloud in clouds:
            if cloud not in ("gcp", "ec2"):
                msg = f"unknown cloud {cloud!r}; use gcp or ec2"
                raise ConfigError(msg)
        return clouds
    found = []
    if stack.gcp.project:
        found.append("gcp")
    if stack.aws.region:
        found.append("ec2")
    if not found:
        msg = (
            f"stack {stack.name!r} has neither gcp.project nor aws.region, so there is nowhere "
            "to look for Dask VMs; choose a stack with --stack or set one of them"
        )
        raise ConfigError(msg)
    return found


# ----------------------------------------------------------------------------- GCE


def _compute(stack: Stack) -> Any:
    from oxeo_flows.clusters.gcp import compute_client

    return compute_client(stack.gcp.endpoints.compute)


def _gce_stack_label(stack: Stack) -> str:
    """The stack label value the clusters of ``stack`` carry (see `cluster_labels`)."""
    return stack.name.lower()[:63]


def _gce_list(stack: Stack, *, all_stacks: bool = False) -> list[ClusterVM]:
    project = stack.gcp.project
    if not project:
        msg = "gcp.project is not set"
        raise ConfigError(msg)
    compute = _compute(stack)
    out: list[ClusterVM] = []
    wanted = None if all_stacks else _gce_stack_label(stack)
    query = f"labels.{LABEL_CLUSTER}:*"
    if wanted is not None:
        query += f" labels.{LABEL_STACK} = {wanted}"
    request = compute.instances().aggregatedList(project=project, filter=query)
    while request is not None:
        try:
            page = request.execute()
        except Exception as exc:
            msg = f"listing GCE instances of project {project!r} failed: {exc}"
            raise ClusterError(msg) from exc
        for scope, items in (page.get("items") or {}).items():
            for inst in items.get("instances", []) or []:
                labels = inst.get("labels", {})
                if LABEL_CLUSTER not in labels:
                    continue
                if wanted is not None and labels.get(LABEL_STACK) != wanted:
                    continue  # the filter is the API's; this check is ours
                created = inst.get("creationTimestamp")
                out.append(
                    ClusterVM(
                        cloud="gcp",
                        id=str(inst.get("id", inst["name"])),
                        name=inst["name"],
                        location=inst.get("zone", scope).rsplit("/", 1)[-1],
                        cluster=labels[LABEL_CLUSTER],
                        flow_run=labels.get(LABEL_FLOW_RUN, ""),
                        created=dt.datetime.fromisoformat(created) if created else None,
                        state=inst.get("status", "?"),
                        stack=labels.get(LABEL_STACK, ""),
                    )
                )
        request = compute.instances().aggregatedList_next(request, page)
    return out


def _gce_delete(stack: Stack, vms: list[ClusterVM]) -> None:
    if not vms:
        return
    compute = _compute(stack)
    for vm in vms:
        try:
            compute.instances().delete(
                project=stack.gcp.project, zone=vm.location, instance=vm.name
            ).execute()
        except Exception as exc:
            msg = f"deleting GCE instance {vm.name} ({vm.location}) failed: {exc}"
            raise ClusterError(msg) from exc


# ----------------------------------------------------------------------------- EC2


def _ec2(stack: Stack) -> Any:
    boto3 = require("boto3", "aws")
    endpoint = stack.aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    session = (
        boto3.Session(profile_name=stack.aws.profile) if stack.aws.profile else boto3.Session()
    )
    return session.client("ec2", region_name=stack.aws.region, endpoint_url=endpoint)


def _ec2_list(stack: Stack, *, all_stacks: bool = False) -> list[ClusterVM]:
    client = _ec2(stack)
    out: list[ClusterVM] = []
    filters = [
        {"Name": "tag-key", "Values": [TAG_CLUSTER]},
        {"Name": "instance-state-name", "Values": _LIVE_EC2},
    ]
    if not all_stacks:
        filters.append({"Name": f"tag:{TAG_STACK}", "Values": [stack.name]})
    try:
        pages = client.get_paginator("describe_instances").paginate(Filters=filters)
        for page in pages:
            for res in page.get("Reservations", []):
                for inst in res.get("Instances", []):
                    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                    if not all_stacks and tags.get(TAG_STACK) != stack.name:
                        continue  # the filter is the API's; this check is ours
                    launched = inst.get("LaunchTime")
                    out.append(
                        ClusterVM(
                            cloud="ec2",
                            id=inst["InstanceId"],
                            name=tags.get("Name", inst["InstanceId"]),
                            location=inst.get("Placement", {}).get(
                                "AvailabilityZone", stack.aws.region or ""
                            ),
                            cluster=tags.get(TAG_CLUSTER, ""),
                            flow_run=tags.get(TAG_FLOW_RUN, ""),
                            created=launched if isinstance(launched, dt.datetime) else None,
                            state=inst.get("State", {}).get("Name", "?"),
                            stack=tags.get(TAG_STACK, ""),
                        )
                    )
    except Exception as exc:
        if isinstance(exc, ClusterError):
            raise
        msg = f"listing EC2 instances in {stack.aws.region} failed: {exc}"
        raise ClusterError(msg) from exc
    return out


def _ec2_delete(stack: Stack, vms: list[ClusterVM]) -> None:
    if not vms:
        return
    client = _ec2(stack)
    try:
        client.terminate_instances(InstanceIds=[vm.id for vm in vms])
    except Exception as exc:
        msg = f"terminating EC2 instances {[vm.id for vm in vms]} failed: {exc}"
        raise ClusterError(msg) from exc


# ----------------------------------------------------------------------------- API


def list_cluster_vms(
    stack: Stack | str | None = None,
    *,
    clouds: list[str] | None = None,
    older_than: dt.timedelta | None = None,
    cluster: str | None = None,
    all_stacks: bool = False,
) -> list[ClusterVM]:
    """VMs of oxeo-flows Dask clusters of one stack that are still alive.

    Args:
        stack: A `Stack` or stack name (default: the active stack); its ``gcp.project`` and
            ``aws.region`` (and endpoints) say where to look, and only VMs labelled / tagged
            with its name are returned.
        clouds: ``["gcp"]``, ``["ec2"]`` or both (default: those the stack configures).
        older_than: Only VMs created at least this long ago.
        cluster: Only VMs of this cluster.
        all_stacks: VMs of every stack (and of none) in that project / region.

    Returns:
        The VMs, oldest first.

    Raises:
        ConfigError: Nowhere to look.
        ClusterError: A cloud API call failed.
    """
    resolved = resolve_stack(stack)
    vms: list[ClusterVM] = []
    for cloud in _clouds(resolved, clouds):
        if cloud == "gcp":
            vms.extend(_gce_list(resolved, all_stacks=all_stacks))
        else:
            vms.extend(_ec2_list(resolved, all_stacks=all_stacks))
    now = dt.datetime.now(dt.UTC)
    if older_than is not None:
        vms = [vm for vm in vms if (vm.age(now) or dt.timedelta.max) >= older_than]
    if cluster is not None:
        vms = [vm for vm in vms if vm.cluster == cluster]
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(vms, key=lambda vm: vm.created or far)


def delete_cluster_vms(
    vms: list[ClusterVM], *, stack: Stack | str | None = None
) -> list[ClusterVM]:
    """Delete (GCE) or terminate (EC2) the given VMs.

    Returns:
        The VMs asked to be deleted.

    Raises:
        ClusterError: A cloud API call failed.
    """
    resolved = resolve_stack(stack)
    _gce_delete(resolved, [vm for vm in vms if vm.cloud == "gcp"])
    _ec2_delete(resolved, [vm for vm in vms if vm.cloud == "ec2"])
    for cloud, cluster in sorted({(vm.cloud, vm.cluster) for vm in vms if vm.cluster}):
        try:
            delete_cluster_secrets_in(resolved, cloud, cluster)
        except OxeoFlowsError as exc:
            logging.getLogger("oxeo_flows.clusters").warning(
                "Could not delete the TLS secrets of cluster %r: %s", cluster, exc
            )
    return vms


def delete_cluster_secrets_in(stack: Stack, cloud: str, cluster: str) -> list[str]:
    """Delete the per-cluster TLS secrets of ``cluster`` in the stack's ``cloud``.

    Args:
        stack: The stack (its ``gcp.project`` / ``aws.region`` and endpoints).
        cloud: ``gcp`` (Secret Manager) or ``ec2`` (Secrets Manager).
        cluster: The cluster's name.

    Returns:
        The secret ids deleted (or already absent).

    Raises:
        ConfigError: The stack has no project / region for that cloud.
        SecretAccessError: A secret could not be deleted.
    """
    from oxeo_flows.clusters.vm_secrets import delete_cluster_secrets

    if cloud == "gcp":
        return delete_cluster_secrets(
            cluster, project=stack.gcp.project, endpoint=stack.gcp.endpoints.secret_manager
        )
    return delete_cluster_secrets(
        cluster,
        region=stack.aws.region,
        endpoint=stack.aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
    )
