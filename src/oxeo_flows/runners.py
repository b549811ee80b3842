"""`dask_runner`: a Prefect `DaskTaskRunner` configured from the active stack.

Backends (``dask.backend``):

- ``local``: an in-process `distributed.LocalCluster` (`oxeo_flows.clusters.local`);
- ``address``: an existing scheduler, ``tls://`` (certificates from files or secrets) or
  ``tcp://``, reached within a deadline that covers the handshake;
- ``gcp``: an ephemeral cluster on private GCE VMs (`oxeo_flows.clusters.gcp`);
- ``ec2``: an ephemeral cluster on private EC2 instances (`oxeo_flows.clusters.ec2`).

Every backend has a start deadline (``start_timeout``); on expiry the VMs are deleted and
`ClusterStartTimeout` says what was dialed and what to check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows._model import build
from oxeo_flows.clusters._deadline import DEFAULT_START_TIMEOUT
from oxeo_flows.clusters.lifecycle import lifecycle_kwargs
from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import DaskSection, Stack, load_stack

if TYPE_CHECKING:
    from prefect_dask.task_runners import DaskTaskRunner

__all__ = ["dask_runner"]

_BACKENDS = ("local", "address", "gcp", "ec2", "vertex")

logger = logging.getLogger("oxeo_flows.dask")


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        name = key.replace("-", "_")
        if isinstance(value, Mapping) and isinstance(out.get(name), dict):
            out[name] = _deep_merge(out[name], value)
        else:
            out[name] = value
    return out


def _resolve(
    backend: str | None, stack: Stack | str | None, overrides: dict[str, Any]
) -> tuple[Stack, DaskSection]:
    dask_overrides = dict(overrides)
    if backend is not None:
        if backend not in _BACKENDS:
            msg = f"unknown Dask backend {backend!r}; choose one of: {', '.join(_BACKENDS)}"
            raise ConfigError(msg)
        dask_overrides["backend"] = backend
    if "adapt" in dask_overrides and dask_overrides["adapt"] is not None:
        adapt = dask_overrides["adapt"]
        if not isinstance(adapt, (tuple, list)) or len(adapt) != 2:
            msg = f"adapt must be a (minimum, maximum) pair, got {adapt!r}"
            raise ConfigError(msg)
        dask_overrides["adapt"] = tuple(adapt)
    if isinstance(stack, Stack):
        if dask_overrides:
            merged = _deep_merge(stack.dask.model_dump(), dask_overrides)
            section = build(DaskSection, merged, where="dask_runner() arguments", prefix="dask.")
            return stack, section
        return stack, stack.dask
    resolved = load_stack(stack, overrides={"dask": dask_overrides} if dask_overrides else None)
    return resolved, resolved.dask


def _local_kwargs(settings: DaskSection) -> dict[str, Any]:
    cluster_kwargs: dict[str, Any] = {"processes": settings.processes}
    if settings.n_workers is not None:
        cluster_kwargs["n_workers"] = settings.n_workers
    if settings.threads_per_worker is not None:
        cluster_kwargs["threads_per_worker"] = settings.threads_per_worker
    if settings.memory_limit is not None:
        cluster_kwargs["memory_limit"] = settings.memory_limit
    return cluster_kwargs


def _initial_workers(settings: DaskSection) -> int:
    if settings.n_workers is not None:
        return settings.n_workers
    if settings.adapt is not None:
        return settings.adapt[0]
    return 1


def _tls_enabled(stack: Stack, settings: DaskSection) -> bool:
    enabled = settings.tls.enabled is not False
    if not enabled:
        logger.warning(
            "TLS is off for the %s Dask cluster (dask.tls.enabled = false, %s): anyone who can "
            "reach the scheduler port can run code on it",
            settings.backend,
            stack.origin("dask", "tls", "enabled"),
        )
    return enabled


def _reuse_kwargs(settings: DaskSection) -> dict[str, Any]:
    """``cluster_name`` and ``reuse`` for the gcp/ec2 factories, when set."""
    out: dict[str, Any] = {}
    if settings.cluster_name:
        out["cluster_name"] = settings.cluster_name
    if settings.reuse:
        if settings.tls.enabled is False:
            msg = "reuse keeps the cluster's client TLS pair in a secret; it needs TLS on"
            raise ConfigError(msg)
        out["reuse"] = True
    return out


def _image_check(
    settings: DaskSection, image: str | None, prebuilt: str | None, where: str
) -> None:
    if not image and not prebuilt:
        msg = (
            f"the {settings.backend!r} Dask backend needs dask.{where}.docker-image (an image with "
            "your flow's dependencies and the same dask/distributed versions as the client) or a "
            f"prebuilt image (dask.{where}.{'source-image' if where == 'gcp' else 'ami'})"
        )
        raise ConfigError(msg)


def _gcp_kwargs(stack: Stack, settings: DaskSection) -> dict[str, Any]:
    gcp = stack.gcp
    vm = settings.gcp
    if not gcp.project:
        msg = (
            f"the 'gcp' Dask backend needs gcp.project (stack {stack.name!r}); "
            "set it in the stack or OXEO_FLOWS_GCP__PROJECT"
        )
        raise ConfigError(msg)
    zone = vm.zone or gcp.zone
    if not zone:
        msg = (
            "the 'gcp' Dask backend needs a zone: set dask.gcp.zone or gcp.zone "
            f"(stack {stack.name!r}), e.g. 'europe-west4-a'"
        )
        raise ConfigError(msg)
    region = zone.rsplit("-", 1)[0]
    if gcp.region and gcp.region != region:
        where = stack.describe("gcp", "region")
        msg = f"dask zone {zone!r} is not in gcp.region {gcp.region!r} ({where})"
        raise ConfigError(msg)
    if not gcp.network and not gcp.subnetwork:
        msg = (
            f"the 'gcp' Dask backend needs gcp.network and gcp.subnetwork (stack {stack.name!r}): "
            "the VMs get private IPs only, in that subnetwork, and the client must reach it"
        )
        raise ConfigError(msg)
    if gcp.subnetwork and not gcp.network:
        msg = (
            f"gcp.subnetwork is {gcp.subnetwork!r} but gcp.network is not set; "
            "set the VPC network name too"
        )
        raise ConfigError(msg)
    try:
        network = stack.gcp_network()
    except ValueError as exc:  # pydantic ValidationError from GcpNetwork
        msg = f"invalid gcp network settings of stack {stack.name!r}: {exc}"
        raise ConfigError(msg) from None
    assert network is not None
    _image_check(settings, vm.docker_image, vm.source_image, "gcp")
    tls = _tls_enabled(stack, settings)
    kwargs: dict[str, Any] = {
        "project": gcp.project,
        "zone": zone,
        "network": network.network,
        "subnetwork": gcp.subnetwork or network.network,
        "network_project": network.network_project,
        "scheduler_machine_type": vm.scheduler_machine_type,
        "worker_machine_type": vm.worker_machine_type,
        "n_workers": _initial_workers(settings),
        "preemptible": vm.preemptible,
        "ngpus": vm.ngpus,
        "gpu_type": vm.gpu_type,
        "scheduler_ngpus": vm.scheduler_ngpus,
        "disk_size_gb": vm.disk_size_gb,
        "disk_type": vm.disk_type,
        "public_ip": vm.public_ip,
        "bootstrap": vm.bootstrap,
        "auto_shutdown": vm.auto_shutdown,
        "labels": dict(vm.labels),
        "tls": tls,
        "tls_delivery": settings.tls.vm_certificates,
        "stack_name": stack.name,
        **_reuse_kwargs(settings),
        **lifecycle_kwargs(settings, tls=tls),
    }
    for key, value in (
        ("docker_image", vm.docker_image),
        ("source_image", vm.source_image),
        ("service_account", vm.service_account or gcp.service_account),
        ("compute_endpoint", gcp.endpoints.compute),
        ("secret_manager_endpoint", gcp.endpoints.secret_manager),
    ):
        if value:
            kwargs[key] = value
    if vm.public_ip:
        logger.warning("dask.gcp.public-ip is true: the Dask VMs get external IPs")
    return kwargs


def _vertex_kwargs(stack: Stack, settings: DaskSection) -> dict[str, Any]:
    project = stack.secrets.gcp_project or stack.gcp.project
    if not project:
        msg = (
            f"the 'vertex' Dask backend keeps each job's TLS material in Secret Manager: set "
            f"gcp.project (or secrets.gcp-project) in stack {stack.name!r}"
        )
        raise ConfigError(msg)
    if settings.adapt is not None:
        msg = "adapt does not apply to the 'vertex' backend: its workers are the job's replicas"
        raise ConfigError(msg)
    kwargs: dict[str, Any] = {
        "n_workers": settings.vertex.worker_count,
        "project": project,
        "scheduler_port": settings.vertex.scheduler_port,
    }
    if stack.gcp.endpoints.secret_manager:
        kwargs["secret_manager_endpoint"] = stack.gcp.endpoints.secret_manager
    return kwargs


def _ec2_kwargs(stack: Stack, settings: DaskSection) -> dict[str, Any]:
    aws = stack.aws
    vm = settings.ec2
    if not aws.region:
        msg = f"the 'ec2' Dask backend needs aws.region (stack {stack.name!r})"
        raise ConfigError(msg)
    subnet = vm.subnet or (aws.subnets[0] if aws.subnets else None)
    if not subnet:
        msg = (
            f"the 'ec2' Dask backend needs a subnet: set dask.ec2.subnet or aws.subnets "
            f"(stack {stack.name!r}); the instances get private IPs only, in that subnet"
        )
        raise ConfigError(msg)
    groups = vm.security_groups or aws.security_groups
    if not groups:
        msg = (
            f"the 'ec2' Dask backend needs security groups: set dask.ec2.security-groups or "
            f"aws.security-groups (stack {stack.name!r}). dask-cloudprovider's default group is "
            "broken and would open tcp 8786-8787 to 0.0.0.0/0; create one that allows tcp "
            "8786-8787 from the client's subnet and all tcp within the group"
        )
        raise ConfigError(msg)
    _image_check(settings, vm.docker_image, vm.ami, "ec2")
    tls = _tls_enabled(stack, settings)
    kwargs: dict[str, Any] = {
        "region": aws.region,
        "subnet": subnet,
        "security_groups": list(groups),
        "scheduler_instance_type": vm.scheduler_instance_type,
        "worker_instance_type": vm.worker_instance_type,
        "n_workers": _initial_workers(settings),
        "spot": vm.spot,
        "public_ip": vm.public_ip,
        "bootstrap": vm.bootstrap,
        "tags": dict(vm.tags),
        "tls": tls,
        "tls_delivery": settings.tls.vm_certificates,
        "stack_name": stack.name,
        **_reuse_kwargs(settings),
        **lifecycle_kwargs(settings, tls=tls),
    }
    for key, value in (
        ("vpc", aws.vpc),
        ("ami", vm.ami),
        ("docker_image", vm.docker_image),
        ("key_name", vm.key_name),
        ("iam_instance_profile", vm.iam_instance_profile),
        ("volume_size_gb", vm.volume_size_gb),
        ("availability_zone", vm.availability_zone),
        ("endpoint_url", aws.endpoint_url),
    ):
        if value is not None:
            kwargs[key] = value
    if vm.public_ip:
        logger.warning("dask.ec2.public-ip is true: the Dask instances get public IPs")
    return kwargs


def dask_runner(
    backend: str | None = None,
    *,
    stack: Stack | str | None = None,
    **overrides: Any,
) -> DaskTaskRunner:
    """A `prefect_dask.DaskTaskRunner` for the active stack's ``[dask]`` section.

    The cluster is created when the flow submits its first task, with the flow run's
    parameters at hand (see ``dask.parameters``), and closed when the flow run ends: completed,
    failed or cancelled (SIGTERM).

    Args:
        backend: ``"local"``, ``"address"``, ``"gcp"`` or ``"ec2"``; defaults to the stack's
            ``dask.backend``.
        stack: A `Stack` or a stack name; defaults to the active stack.
        **overrides: Values of the ``[dask]`` section for this runner only, in Python
            spelling, e.g. ``start_timeout=120``, ``adapt=(1, 10)``, ``address="tls://..."``,
            ``parameters={"n_workers": "n_workers"}``, ``gcp={"preemptible": True}``,
            ``tls={"ca_file": "ca.pem", ...}``. They take precedence over the stack and the
            environment.

    Returns:
        A task runner to pass to ``@flow(task_runner=...)`` (an `OxeoDaskTaskRunner`, which is
        a ``prefect_dask.DaskTaskRunner``).

    Raises:
        ConfigError: The backend or a setting is invalid.
        MissingExtraError: ``oxeo-flows[dask]`` is not installed.

    Example:
        ```python
        from prefect import flow, task
        from oxeo_flows import dask_runner

        @task
        def double(x: int) -> int:
            return 2 * x

        @flow(task_runner=dask_runner("local", parameters={"n_workers": "workers"}))
        def pipeline(n: int = 10, workers: int = 2) -> int:
            return sum(double.map(range(n)).result())
        ```
    """
    resolved, settings = _resolve(backend, stack, overrides)
    from oxeo_flows.clusters.runner import check_parameter_targets, runner_class

    check_parameter_targets(settings.backend, settings.parameters)
    if not settings.nanny and settings.backend not in ("gcp", "ec2"):
        msg = (
            f"dask.nanny = false applies to the gcp and ec2 backends, not {settings.backend!r} "
            "(vertex workers run without a Nanny already; local workers are threads, or "
            "processes under LocalCluster's Nanny); remove the setting"
        )
        raise ConfigError(msg)
    timeout = settings.start_timeout or DEFAULT_START_TIMEOUT.get(settings.backend, 600.0)
    adapt = {"minimum": settings.adapt[0], "maximum": settings.adapt[1]} if settings.adapt else None
    common: dict[str, Any] = {
        "backend": settings.backend,
        "start_timeout": timeout,
        "stack_name": resolved.name,
        "parameters": settings.parameters,
    }
    require("prefect_dask", "dask")
    cls = runner_class()
    runner: DaskTaskRunner
    if settings.backend == "local":
        from oxeo_flows.clusters.local import local_cluster

        runner = cls(
            cluster_class=local_cluster,
            cluster_kwargs=_local_kwargs(settings),
            adapt_kwargs=adapt,
            **common,
        )
        return runner
    if settings.backend == "address":
        from oxeo_flows.clusters.address import parse_address

        assert settings.address is not None
        scheme, _host, _port = parse_address(settings.address)
        if adapt:
            msg = (
                "adapt does not apply to the 'address' backend (the scheduler is not ours to scale)"
            )
            raise ConfigError(msg)
        if scheme == "tls" and not settings.tls.material:
            msg = (
                f"{settings.address!r} is tls:// but no TLS material is configured: set "
                "dask.tls.ca-file/cert-file/key-file or dask.tls.ca-secret/cert-secret/key-secret"
            )
            raise ConfigError(msg)
        if scheme == "tcp":
            logger.warning(
                "Dask scheduler %s is plain tcp://: traffic and pickled tasks are unencrypted "
                "and unauthenticated",
                settings.address,
            )
        if settings.tls.material:
            from oxeo_flows.clusters.tls import check_tls_material

            check_tls_material(settings.tls)
        tls = settings.tls.model_dump(exclude_none=True) if settings.tls.material else None
        runner = cls(address=settings.address, tls=tls, **common)
        return runner
    if settings.backend == "vertex":
        from oxeo_flows.clusters.vertex import vertex_cluster

        runner = cls(
            cluster_class=vertex_cluster,
            cluster_kwargs=_vertex_kwargs(resolved, settings),
            **common,
        )
        return runner
    if settings.backend == "gcp":
        from oxeo_flows.clusters.gcp import gcp_cluster

        runner = cls(
            cluster_class=gcp_cluster,
            cluster_kwargs=_gcp_kwargs(resolved, settings),
            adapt_kwargs=adapt,
            **common,
        )
        return runner
    from oxeo_flows.clusters.ec2 import ec2_cluster

    runner = cls(
        cluster_class=ec2_cluster,
        cluster_kwargs=_ec2_kwargs(resolved, settings),
        adapt_kwargs=adapt,
        **common,
    )
    return runner
