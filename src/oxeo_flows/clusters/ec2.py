"""The ``ec2`` backend: an ephemeral Dask cluster on private EC2 instances (dask-cloudprovider).

`ec2_cluster` is the module-level cluster factory that `dask_runner` hands to Prefect.
Private by default (``use_private_ip=True``), in an explicit subnet with explicit security
groups (dask-cloudprovider's default-group path is broken and would open 8786-8787 to the
world), TLS with per-cluster certificates, every instance tagged with the cluster name and the
flow run id, and a start deadline after which every instance is terminated.

Every instance requires IMDSv2 (``HttpTokens=required``) with a hop limit of 2, so that the
container (one hop further than the host, ``docker run --net=host`` or not) still reaches the
instance role. The cloud-init user-data is gzip-compressed (cloud-init unpacks it), and its
size is checked against EC2's 16,384-byte limit before RunInstances.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.clusters._deadline import Deadline
from oxeo_flows.clusters._vm import (
    TAG_PREFIX,
    ClusterPlan,
    InheritEnvMixin,
    Pinned,
    Probe,
    SchedulerWaitMixin,
    VMClusterMixin,
    current_flow_run_id,
    new_cluster_name,
)
from oxeo_flows.clusters.vm_secrets import Delivery, issue_vm_tls, start_vm_cluster
from oxeo_flows.errors import ClusterError

if TYPE_CHECKING:
    from dask_cloudprovider.aws import EC2Cluster

__all__ = ["TAG_CLUSTER", "TAG_FLOW_RUN", "ec2_cluster", "ec2_cluster_class", "ec2_tags"]

TAG_CLUSTER = TAG_PREFIX + "cluster"
TAG_FLOW_RUN = TAG_PREFIX + "flow-run"
TAG_STACK = TAG_PREFIX + "stack"
_LIVE_STATES = ["pending", "running", "stopping", "stopped"]
_GONE_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})

_CLASSES: dict[str, type[Any]] = {}
logger = logging.getLogger("oxeo_flows.clusters")

#: EC2's limit on user-data, in bytes, before base64 encoding.
USER_DATA_LIMIT = 16384
#: IMDSv2 only; hop limit 2 so that a container on the instance reaches the metadata service.
METADATA_OPTIONS: dict[str, Any] = {
    "HttpTokens": "required",
    "HttpPutResponseHopLimit": 2,
    "HttpEndpoint": "enabled",
}


def _require_imdsv2(params: dict[str, Any], **_: Any) -> None:
    """Set `METADATA_OPTIONS` on RunInstances (a botocore ``provide-client-params`` hook)."""
    params.setdefault("MetadataOptions", dict(METADATA_OPTIONS))


class _ClientContext:
    """``session.create_client(...)``'s context manager, hooking RunInstances of the client."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def __aenter__(self) -> Any:
        client = await self._inner.__aenter__()
        client.meta.events.register("provide-client-params.ec2.RunInstances", _require_imdsv2)
        return client

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)


def compress_user_data(text: str, *, what: str) -> bytes:
    """The gzip-compressed user-data, checked against EC2's limit.

    Args:
        text: The cloud-init document.
        what: Which instance it is for (for the message).

    Returns:
        The gzip bytes (cloud-init detects and unpacks them).

    Raises:
        ClusterError: Over `USER_DATA_LIMIT` bytes even compressed.
    """
    data = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    if len(data) > USER_DATA_LIMIT:
        msg = (
            f"the EC2 user-data of {what} is {len(data):,} bytes gzip-compressed "
            f"({len(text.encode()):,} bytes of cloud-init); EC2 accepts at most "
            f"{USER_DATA_LIMIT:,} bytes, so RunInstances was not called. Shrink what the "
            "instances inherit: the dask config of this process (DASK_* variables, "
            "~/.config/dask/*.yaml: every non-default value is shipped), env_vars and "
            "extra_bootstrap of the cluster, or use an AMI with Docker installed "
            "(dask.ec2.ami, bootstrap = false) to drop the install script."
        )
        raise ClusterError(msg)
    return data


class _EndpointSession:
    """An aiobotocore session whose clients use a given endpoint (moto, VPC endpoints)."""

    def __init__(self, session: Any, endpoint_url: str | None) -> None:
        self._session = session
        self._endpoint_url = endpoint_url

    def create_client(self, *args: Any, **kwargs: Any) -> Any:
        if self._endpoint_url and "endpoint_url" not in kwargs:
            kwargs["endpoint_url"] = self._endpoint_url
        service = args[0] if args else kwargs.get("service_name")
        inner = self._session.create_client(*args, **kwargs)
        return _ClientContext(inner) if service == "ec2" else inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


_ALREADY_GONE = frozenset({"InvalidInstanceID.NotFound"})


class _TerminateOnceMixin:
    """``destroy_vm`` that accepts an instance already gone.

    An instance whose container exited terminates itself (cloud-init's shutdown, with
    ``InstanceInitiatedShutdownBehavior=terminate``), and EC2 forgets a terminated instance
    after a while: terminating it then is ``InvalidInstanceID.NotFound``, which means done.
    """

    name: str

    async def destroy_vm(self) -> None:
        try:
            await super().destroy_vm()  # type: ignore[misc]
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code not in _ALREADY_GONE:
                raise
            logger.debug("instance %s was already terminated (%s)", self.name, code)


class _TagAtLaunchMixin:
    """RunInstances carries the instance's own tags; no CreateTags call after it.

    dask-cloudprovider tags each instance (``Name``, ``Dask Cluster``) with a CreateTags call
    once RunInstances returns: one more API call before the scheduler's address is handed to
    the workers, and an instance without those tags if the flow run dies in between. Here they
    go into RunInstances' TagSpecifications with the cluster's own tags; what is left of
    ``configure_vm`` is the wait for the instance's address.
    """

    name: str
    cluster: Any
    instance: dict[str, Any]
    instance_tags: dict[str, str]
    use_private_ip: bool

    async def create_vm(self) -> Any:
        self.instance_tags = {
            **self.instance_tags,
            "Name": self.name,
            "Dask Cluster": self.cluster.uuid,
        }
        return await super().create_vm()  # type: ignore[misc]

    async def configure_vm(self, client: Any) -> tuple[str, None]:
        self.cluster._log(f"Created instance {self.instance['InstanceId']} as {self.name}")
        key = "PrivateIpAddress" if self.use_private_ip else "PublicIpAddress"
        delay, waited = 0.1, 0.0
        while self.instance.get(key) is None:
            if waited > 300:
                msg = f"instance {self.instance['InstanceId']} got no {key} in 300 s"
                raise ClusterError(msg)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 10.0)
            found = await client.describe_instances(InstanceIds=[self.instance["InstanceId"]])
            [reservation] = found["Reservations"]
            [self.instance] = reservation["Instances"]
        return self.instance[key], None


class _SchedulerParts(InheritEnvMixin, SchedulerWaitMixin, _TagAtLaunchMixin, _TerminateOnceMixin):
    """What our scheduler instance adds, in method resolution order."""


def ec2_tags(name: str, flow_run_id: str | None, stack: str | None = None) -> dict[str, str]:
    """The tags every instance of a cluster carries."""
    tags = {TAG_CLUSTER: name, TAG_FLOW_RUN: flow_run_id or "none", "Name": f"{name}-dask"}
    if stack:
        tags[TAG_STACK] = stack
    return tags


def ec2_cluster_class() -> type[Any]:
    """Our ``EC2Cluster`` subclass (built on first use, so importing this module is cheap)."""
    if "cluster" in _CLASSES:
        return _CLASSES["cluster"]
    ec2 = require("dask_cloudprovider.aws.ec2", "dask")

    class OxeoEC2Scheduler(_SchedulerParts, ec2.EC2Scheduler):  # type: ignore[misc,name-defined]
        """A scheduler instance with a bounded, non-blocking wait that notices a stopped one."""

        async def oxeo_check_alive(self) -> None:
            """Raise `ClusterError` (with the console output) if the instance has stopped."""
            instance = getattr(self, "instance", None)
            if not isinstance(instance, dict) or "InstanceId" not in instance:
                return
            iid = instance["InstanceId"]
            session = self.cluster.boto_session
            async with session.create_client("ec2", region_name=self.region) as client:
                found = await client.describe_instances(InstanceIds=[iid])
                state = found["Reservations"][0]["Instances"][0]["State"]["Name"]
                if state not in _GONE_STATES:
                    return
                try:
                    out = await client.get_console_output(InstanceId=iid)
                    console = str(out.get("Output") or "")
                except Exception as exc:
                    console = f"(could not read the console output: {exc})"
            raise ClusterError(self.cluster._oxeo_died_message(iid, state, console))

    class OxeoEC2Worker(InheritEnvMixin, _TagAtLaunchMixin, _TerminateOnceMixin, ec2.EC2Worker):  # type: ignore[misc,name-defined]
        """A worker instance inheriting the cluster's private config."""

    class OxeoEC2Cluster(VMClusterMixin, ec2.EC2Cluster):  # type: ignore[misc,name-defined]
        """``EC2Cluster`` with a start deadline, cleanup by tag and no global config changes."""

        def __init__(
            self, *, boto_session: Any = None, endpoint_url: str | None = None, **kwargs: Any
        ) -> None:
            if boto_session is None:
                from oxeo_flows.aws import share_service_models

                aiobotocore = require("aiobotocore.session", "dask")
                boto_session = share_service_models(aiobotocore.get_session())
            self._oxeo_session = _EndpointSession(boto_session, endpoint_url)
            super().__init__(**kwargs)

        @property
        def boto_session(self) -> Any:
            return self._oxeo_session

        @boto_session.setter
        def boto_session(self, value: Any) -> None:
            pass  # EC2Cluster creates its own session; keep ours (endpoint, event hooks).

        def render_process_cloud_init(self, process: Any) -> bytes:
            """The cloud-init of ``process``, gzip-compressed and checked against the limit."""
            text: str = super().render_process_cloud_init(process)
            what = f"instance {getattr(process, 'name', '?')} of cluster {self._plan.name!r}"
            return compress_user_data(text, what=what)

        scheduler_class = Pinned(OxeoEC2Scheduler)
        worker_class = Pinned(OxeoEC2Worker)

        async def _oxeo_sweep(self) -> list[str]:
            async with self.boto_session.create_client("ec2", region_name=self.region) as client:
                found = await client.describe_instances(
                    Filters=[
                        {"Name": f"tag:{TAG_CLUSTER}", "Values": [self._plan.name]},
                        {"Name": "instance-state-name", "Values": _LIVE_STATES},
                    ]
                )
                ids = [
                    inst["InstanceId"]
                    for res in found.get("Reservations", [])
                    for inst in res.get("Instances", [])
                ]
                if ids:
                    await client.terminate_instances(InstanceIds=ids)
                return ids

    for cls in (OxeoEC2Scheduler, OxeoEC2Worker, OxeoEC2Cluster):
        cls.__module__ = __name__
    _CLASSES["cluster"] = OxeoEC2Cluster
    return OxeoEC2Cluster


def ec2_cluster(
    *,
    region: str,
    subnet: str,
    security_groups: list[str] | tuple[str, ...],
    vpc: str | None = None,
    ami: str | None = None,
    scheduler_instance_type: str = "t3.medium",
    worker_instance_type: str = "t3.large",
    n_workers: int = 0,
    spot: bool = False,
    iam_instance_profile: str | None = None,
    docker_image: str | None = None,
    key_name: str | None = None,
    public_ip: bool = False,
    volume_size_gb: int | None = None,
    bootstrap: bool = True,
    availability_zone: str | None = None,
    tags: dict[str, str] | None = None,
    tls: bool = True,
    tls_delivery: Delivery = "secret",
    start_timeout: float = 600.0,
    cluster_name: str | None = None,
    reuse: bool = False,
    flow_run_id: str | None = None,
    stack_name: str | None = None,
    endpoint_url: str | None = None,
    boto_session: Any = None,
    probe: Probe | None = None,
    parallel_boot: bool = True,
    idle_timeout: float | None = None,
    no_client_timeout: float | None = None,
    nanny: bool = True,
    **kwargs: Any,
) -> EC2Cluster:
    """Start a private Dask cluster on EC2 instances, within ``start_timeout`` seconds.

    Args:
        region: AWS region.
        subnet: Subnet id the instances are placed in (required).
        security_groups: Security group ids (required; they must allow tcp 8786-8787 from the
            client and all tcp between the cluster's instances).
        vpc: VPC id (for messages and checks).
        ami: AMI id (default: dask-cloudprovider's Ubuntu lookup).
        scheduler_instance_type: Instance type of the scheduler.
        worker_instance_type: Instance type of the workers.
        n_workers: Workers to start with.
        spot: Spot worker instances.
        iam_instance_profile: Instance profile name or ARN.
        docker_image: Image the instances run.
        key_name: SSH key pair name.
        public_ip: Give instances public IPs (not recommended).
        volume_size_gb: Root volume size.
        bootstrap: Install Docker at boot.
        availability_zone: Availability zone.
        tags: Extra tags.
        tls: Encrypt with per-cluster, per-role certificates (`oxeo_flows.clusters.pki`).
        tls_delivery: How the instances get their role's certificate and key: ``secret``
            (they read a per-cluster Secrets Manager secret in ``region`` with their instance
            role at boot; the image needs oxeo-flows) or ``metadata`` (in their user-data:
            readable with ``ec2:DescribeInstanceAttribute``; for images without oxeo-flows).
        start_timeout: Deadline for instance creation + scheduler reachable + first workers.
        cluster_name: Name used in tags (default: a fresh ``oxeo-XXXXXXXX``).
        flow_run_id: Flow run id for the tags (default: the current flow run).
        reuse: The cluster outlives this flow run (`oxeo_flows.clusters.reuse`): the client's
            TLS pair is kept in the per-cluster secret ``oxeo-dask-<name>-client`` too.
        stack_name: Stack name for the tags.
        endpoint_url: EC2 and Secrets Manager endpoint (default ``AWS_ENDPOINT_URL``).
        boto_session: An ``aiobotocore`` session to use (e.g. with event hooks).
        probe: Async ``(host, port) -> bool`` reachability check (default: a TCP connect).
        parallel_boot: Create the first workers' VMs while the scheduler VM boots (default);
            False waits for the scheduler first, as dask-cloudprovider does.
        idle_timeout: Seconds without tasks after which the scheduler closes and the VMs shut
            down (None: never).
        no_client_timeout: Seconds without a connected client after which the scheduler
            closes and the VMs shut down (None: never).
        nanny: Run each worker under a Nanny, which restarts a worker that dies (default);
            False runs ``distributed.Worker`` as the VM's container process (one interpreter
            less per worker VM, no restart).
        **kwargs: Passed to ``dask_cloudprovider.aws.EC2Cluster``.

    Returns:
        The running cluster.

    Raises:
        ClusterStartTimeout: Not reachable in time; every instance has been terminated.
        ClusterError: The scheduler instance stopped during start (its console output is in
            the message); every instance has been terminated.
    """
    deadline = Deadline(start_timeout)
    name = cluster_name or new_cluster_name()
    all_tags = {**(tags or {}), **ec2_tags(name, flow_run_id or current_flow_run_id(), stack_name)}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    vm_tls = issue_vm_tls(
        tls,
        name,
        client_secret=reuse,
        delivery=tls_delivery,
        location=f"aws:{region}",
        endpoint=endpoint,
        labels={k: v for k, v in all_tags.items() if k in (TAG_CLUSTER, TAG_STACK)},
    )
    security: Any = vm_tls.client_security() if vm_tls else False
    remote: dict[str, Any] = vm_tls.shared_config() if vm_tls else {}
    plan = ClusterPlan(
        name=name,
        cloud="ec2",
        start_timeout=start_timeout,
        labels=all_tags,
        network=(
            f"vpc {vpc or '?'} / subnet {subnet} / security groups {', '.join(security_groups)}"
        ),
        region=region,
        remote_config=remote,
        probe=probe,
        deadline=deadline,
        vm_tls=vm_tls,
        parallel_boot=parallel_boot,
        idle_timeout=idle_timeout,
        no_client_timeout=no_client_timeout,
        nanny=nanny,
    )
    options: dict[str, Any] = {
        "region": region,
        "subnet_id": subnet,
        "security_groups": list(security_groups),
        "scheduler_instance_type": scheduler_instance_type,
        "worker_instance_type": worker_instance_type,
        "n_workers": n_workers,
        "spot": spot,
        "use_private_ip": not public_ip,
        "bootstrap": bootstrap,
        "instance_tags": dict(all_tags),
        "volume_tags": dict(all_tags),
        "security": security,
        "endpoint_url": endpoint,
        "boto_session": boto_session,
    }
    if tls:
        options["protocol"] = "tls"
    for key, value in (
        ("vpc", vpc),
        ("ami", ami),
        ("docker_image", docker_image),
        ("key_name", key_name),
        ("filesystem_size", volume_size_gb),
        ("availability_zone", availability_zone),
    ):
        if value is not None:
            options[key] = value
    if iam_instance_profile:
        field = "Arn" if iam_instance_profile.startswith("arn:") else "Name"
        options["iam_instance_profile"] = {field: iam_instance_profile}
    options.update(kwargs)
    return start_vm_cluster(ec2_cluster_class(), plan, options)
