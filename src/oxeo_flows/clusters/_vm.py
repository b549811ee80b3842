"""What our GCE and EC2 clusters add to dask-cloudprovider's ``VMCluster``.

dask-cloudprovider waits for the scheduler with a blocking connect in an endless loop, polls
for a VM to be RUNNING without a timeout, sets TLS certificates in the process-wide dask
config, and mutates its global label config. The mixins here are placed before the provider's
classes (``class OurCluster(VMClusterMixin, GCPCluster)``) and replace exactly those parts:

- the whole start (VM creation + scheduler reachable + first workers) runs under one deadline;
  on expiry every VM we created is deleted (by object, then by label) and `ClusterStartTimeout`
  is raised with the address dialed and a checklist;
- the scheduler wait is a non-blocking connect, attempt by attempt, and every
  `ALIVE_CHECK_EVERY` seconds a look at the scheduler VM's status: a stopped VM fails the start
  at once, with its console;
- parallel boot: the first workers' VMs are created as soon as the scheduler's private address
  is known (GCE: its ``networkIP`` right after insert; EC2: ``PrivateIpAddress`` from
  RunInstances), while the scheduler VM boots, instead of after the scheduler answers; their
  workers retry until it does (``death_timeout`` = the start deadline). A failed start
  (deadline, stopped scheduler VM, a worker VM that could not be created) deletes every VM;
- the VMs inherit the idle and no-client timeouts (`oxeo_flows.clusters.lifecycle`);
- TLS material for the VMs is serialised into their own cloud-init environment only;
- provider config is read from a private copy (scoped ``dask.config.set``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from oxeo_flows.clusters._deadline import Deadline, scheduler_timeout_message
from oxeo_flows.clusters.lifecycle import check_nanny, lifecycle_config
from oxeo_flows.errors import ClusterError, ClusterStartTimeout

__all__ = [
    "ALIVE_CHECK_EVERY",
    "ClusterPlan",
    "InheritEnvMixin",
    "Pinned",
    "SchedulerWaitMixin",
    "VMClusterMixin",
    "cluster_labels",
    "current_flow_run_id",
    "new_cluster_name",
    "tcp_probe",
]

logger = logging.getLogger("oxeo_flows.clusters")

Probe = Callable[[str, int], Awaitable[bool]]

#: Seconds between two reads of the scheduler VM's status while it is awaited (one GET /
#: DescribeInstances each): a VM that stopped fails the start within about this.
ALIVE_CHECK_EVERY = 0.5


async def tcp_probe(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` opens (non-blocking, for the event loop)."""
    try:
        _reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@dataclass
class ClusterPlan:
    """What a VM cluster needs beyond the provider's own arguments."""

    name: str
    cloud: str
    start_timeout: float
    labels: dict[str, str]
    network: str
    zone: str | None = None
    region: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    remote_config: dict[str, Any] = field(default_factory=dict)
    probe: Probe | None = None
    deadline: Deadline | None = None
    """The start deadline, set when the factory was called (TLS material and the API client
    are built inside it); a new one from ``start_timeout`` when None."""
    vm_tls: Any = None
    """The cluster's `oxeo_flows.clusters.vm_secrets.VmTls` (per-role certificates and how
    the VMs get theirs), or None without TLS."""
    parallel_boot: bool = True
    """Create the first workers' VMs while the scheduler VM boots (False: after it answers,
    as dask-cloudprovider does)."""
    idle_timeout: float | None = None
    """Seconds without tasks after which the scheduler closes (None: never)."""
    no_client_timeout: float | None = None
    """Seconds without a connected client after which the scheduler closes (None: never)."""
    nanny: bool = True
    """Workers run under a Nanny (False: ``distributed.Worker`` is the VM's process)."""


async def _within(awaitable: Awaitable[Any], seconds: float, *, grace: float = 10.0) -> Any:
    """Await ``awaitable`` for at most ``seconds``; then cancel it and raise `TimeoutError`.

    Unlike ``asyncio.wait_for``, a task that does not finish once cancelled (a stuck API call,
    a swallowed cancellation) is waited on for ``grace`` seconds only, so that cleanup runs.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _pending = await asyncio.wait({task}, timeout=max(seconds, 0.001))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=grace)
    if not task.done():
        logger.warning("a cancelled cluster start step did not stop within %g s", grace)
    raise TimeoutError


def _cluster_error_in(exc: BaseException) -> ClusterError | None:
    """The `ClusterError` in ``exc``'s chain of causes and contexts, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ClusterError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class Pinned:
    """A class attribute that an instance cannot reassign.

    dask-cloudprovider's clusters set ``scheduler_class`` / ``worker_class`` in ``__init__``;
    ``scheduler_class = Pinned(OurScheduler)`` keeps ours.
    """

    def __init__(self, value: type[Any]) -> None:
        self.value = value

    def __get__(self, obj: object, owner: type | None = None) -> type[Any]:
        return self.value

    def __set__(self, obj: object, value: object) -> None:
        """Ignore the assignment."""


class VMClusterMixin:
    """Deadline, cleanup and config isolation for a dask-cloudprovider ``VMCluster``."""

    _plan: ClusterPlan
    _deadline: Deadline
    _oxeo_starting: bool
    _oxeo_dialed: str | None
    _oxeo_vm: str | None
    _oxeo_inherit: str
    _oxeo_early: list[asyncio.Future[Any]]
    status: Any
    workers: dict[str, Any]
    worker_spec: dict[str, Any]
    _created: Any

    def __init__(self, *, plan: ClusterPlan, **kwargs: Any) -> None:
        import dask.config
        from dask_cloudprovider.utils.config_helper import prune_defaults

        self._plan = plan
        self._deadline = plan.deadline or Deadline(plan.start_timeout)
        self._oxeo_starting = True
        self._oxeo_dialed = None
        self._oxeo_vm = None
        self._oxeo_early = []
        section = f"cloudprovider.{plan.cloud}"
        private = copy.deepcopy(dask.config.get(section, {}))
        dask.config.set(plan.config_overrides, config=private)
        # What the VMs inherit: the user's non-default config plus the cluster's TLS material,
        # computed on a copy so nothing reaches this process's config.
        shipped = prune_defaults(
            copy.deepcopy(dask.config.global_config), dask.config.merge(*dask.config.defaults)
        )
        dask.config.set(plan.remote_config, config=shipped)
        lifecycle = lifecycle_config(
            idle_timeout=plan.idle_timeout,
            no_client_timeout=plan.no_client_timeout,
            preload=list(dask.config.get("distributed.scheduler.preload", None) or []),
        )
        dask.config.update(shipped, lifecycle)
        self._oxeo_inherit = dask.config.serialize(shipped)
        # Workers may boot before their scheduler: they retry until it answers, and give up
        # (their VM shuts down) after the start deadline.
        worker_options = dict(kwargs.get("worker_options") or {})
        worker_options.setdefault("death_timeout", f"{plan.start_timeout:g}s")
        kwargs["worker_options"] = worker_options
        if not plan.nanny:
            tls = plan.vm_tls
            check_nanny(False, tls=tls is not None, delivery=getattr(tls, "delivery", ""))
            kwargs.setdefault("worker_class", "distributed.Worker")
        try:
            with dask.config.set({section: private}):
                super().__init__(**kwargs)
        except BaseException:
            # A start that failed or was interrupted (SIGTERM) must not leave VMs behind.
            self._oxeo_emergency_cleanup()
            raise
        self._oxeo_starting = False

    # -- set_env: what each VM inherits --------------------------------------------------------

    def _oxeo_set_env(self) -> str:
        return f'env DASK_INTERNAL_INHERIT_CONFIG="{self._oxeo_inherit}"'

    # -- deadline ------------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await _within(super()._start(), self._deadline.remaining())  # type: ignore[misc]
        except TimeoutError as exc:
            await self._oxeo_abort()
            raise ClusterStartTimeout(self._oxeo_timeout_message()) from exc
        except Exception as exc:
            # A scheduler VM that stopped: its console was read already; delete everything.
            # distributed wraps it (RuntimeError("Cluster failed to start: ...") from it), or
            # its own cleanup fails on the way out with the ClusterError as the context.
            cause = _cluster_error_in(exc)
            if cause is None:
                raise
            await self._oxeo_abort()
            raise cause from None

    async def _correct_state_internal(self) -> None:
        from distributed.core import Status

        parent = super()._correct_state_internal  # type: ignore[misc]
        if not self._oxeo_starting or self.status in (Status.closing, Status.failed):
            await parent()  # running, or SpecCluster closing a cluster that failed to start
            return

        async def first_workers() -> None:
            early, self._oxeo_early = self._oxeo_early, []
            if early:
                await asyncio.gather(*early)
            await parent()

        try:
            await _within(first_workers(), self._deadline.remaining())
        except TimeoutError as exc:
            await self._oxeo_abort()
            raise ClusterStartTimeout(self._oxeo_timeout_message(workers=True)) from exc
        except Exception as exc:
            await self._oxeo_abort()
            if isinstance(exc, ClusterError):
                raise
            raise ClusterError(self._oxeo_worker_failed_message(exc)) from exc

    # -- parallel boot -------------------------------------------------------------------------

    def _oxeo_boot_workers(self, scheduler_address: str) -> None:
        """Create the first workers' VMs now, pointed at ``scheduler_address`` (not yet up).

        What ``SpecCluster._correct_state_internal`` does for new workers, started as tasks
        and registered in ``workers`` at once, so that it skips them and every failure path
        deletes them. A no-op when parallel boot is off or the workers exist already.
        """
        if not self._plan.parallel_boot or not self._oxeo_starting or self._oxeo_early:
            return
        from distributed.utils import import_term

        for name, spec in self.worker_spec.items():
            if name in self.workers:
                continue
            cls = spec["cls"]
            if isinstance(cls, str):
                cls = import_term(cls)
            opts = dict(spec.get("options", {}))
            opts.setdefault("name", name)
            worker = cls(scheduler_address, **opts)
            self._created.add(worker)
            worker._cluster = weakref.ref(self)
            self.workers[name] = worker
            self._oxeo_early.append(asyncio.ensure_future(_started(worker)))
        if self._oxeo_early:
            self._log(  # type: ignore[attr-defined]
                f"Creating {len(self._oxeo_early)} worker VM(s) while the scheduler boots"
            )

    def _oxeo_check_workers(self) -> None:
        """Raise `ClusterError` if a worker VM created in parallel could not be created."""
        for future in self._oxeo_early:
            if future.done() and not future.cancelled() and future.exception() is not None:
                exc = future.exception()
                assert exc is not None
                raise ClusterError(self._oxeo_worker_failed_message(exc)) from exc

    def _oxeo_worker_failed_message(self, exc: BaseException) -> str:
        plan = self._plan
        return (
            f"A worker VM of cluster {plan.name!r} ({plan.cloud}) could not be created: "
            f"{type(exc).__name__}: {exc}. Every VM of the cluster has been deleted. Check the "
            "quota of the worker machine type in the zone/region, its name, and the image."
        )

    def _oxeo_timeout_message(self, *, workers: bool = False) -> str:
        plan = self._plan
        hint = (
            f"Cluster {plan.name!r} ({plan.cloud}, network {plan.network}); "
            "every VM it created has been deleted."
        )
        if workers:
            hint = "The scheduler answered but the first workers did not start in time. " + hint
        address = self._oxeo_dialed or "(no address yet: the scheduler VM was not RUNNING)"
        cause = "" if self._oxeo_dialed else "VM creation did not finish"
        return scheduler_timeout_message(
            address,
            timeout=plan.start_timeout,
            cause=cause,
            hint=hint,
            cloud=plan.cloud,
            vm=self._oxeo_vm,
            zone=plan.zone,
            region=plan.region,
        )

    def _oxeo_died_message(self, vm: str, status: str, console: str, *, lines: int = 40) -> str:
        plan = self._plan
        tail = "\n".join(console.rstrip().splitlines()[-lines:]) or "(empty)"
        address = self._oxeo_dialed or "(no address yet)"
        return (
            f"The Dask scheduler VM {vm} of cluster {plan.name!r} ({plan.cloud}) is {status} "
            f"after {self._deadline.elapsed():.1f} s, before the scheduler answered at "
            f"{address}: its container exited. Every VM of the cluster has been deleted.\n"
            f"Last {lines} lines of its console output:\n{tail}"
        )

    # -- cleanup -------------------------------------------------------------------------------

    async def _close(self) -> None:
        """SpecCluster's close, then a sweep by label: no VM of ours outlives the close.

        A close interrupted half-way (a SIGTERM of the flow run, a scheduler that does not
        answer its terminate) may skip the scheduler VM; the sweep deletes what is left, and
        the cluster's TLS secrets. A detached (reused) cluster is left alone.
        """
        owned = bool(getattr(self, "shutdown_scheduler", True)) and not self._oxeo_starting
        try:
            await super()._close()  # type: ignore[misc]
        finally:
            if owned and not getattr(self, "_oxeo_scheduler_closed", False):
                await self._oxeo_sweep_leftovers()

    async def _oxeo_sweep_leftovers(self) -> None:
        await self._oxeo_sweep_by_label(
            60, logging.WARNING, "Deleted VMs of %s left by its close: %s"
        )
        tls = getattr(self._plan, "vm_tls", None)
        if tls is not None:
            try:
                await self.call_async(tls.delete)  # type: ignore[attr-defined]
            except Exception as exc:
                logger.warning("Could not delete the TLS secrets of %r: %s", self._plan.name, exc)

    async def _oxeo_abort(self) -> None:
        """Delete every VM of this cluster: by object first, then by label."""
        from distributed.core import Status

        self.status = Status.failed
        early, self._oxeo_early = list(getattr(self, "_oxeo_early", [])), []
        for future in early:
            future.cancel()
        if early:
            # A cancelled create may still be finishing its API call in a thread.
            await asyncio.wait(early, timeout=10)
        instances = [getattr(self, "scheduler", None), *getattr(self, "workers", {}).values()]

        async def close(inst: Any) -> None:
            try:
                await asyncio.wait_for(inst.close(), 60)
            except Exception as exc:
                logger.debug("closing %s failed: %s", getattr(inst, "name", inst), exc)

        await asyncio.gather(
            *(close(inst) for inst in instances if inst is not None and hasattr(inst, "close"))
        )
        await self._oxeo_sweep_by_label(120, logging.INFO, "Deleted leftover VMs of %s: %s")
        self.status = Status.closed

    async def _oxeo_sweep_by_label(self, within: float, level: int, found: str) -> None:
        """Delete the VMs still labelled with this cluster; log ``found`` if there were any."""
        sweep = getattr(self, "_oxeo_sweep", None)
        if sweep is None:
            return
        try:
            deleted = await asyncio.wait_for(sweep(), within)
        except Exception as exc:
            logger.warning(
                "Could not sweep VMs labelled with cluster %r: %s; run "
                "`oxeo-flows clusters cleanup`",
                self._plan.name,
                exc,
            )
        else:
            if deleted:
                logger.log(level, found, self._plan.name, deleted)

    def _oxeo_emergency_cleanup(self) -> None:
        from distributed.core import Status

        loop_runner = getattr(self, "_loop_runner", None)
        try:
            if getattr(self, "status", None) != Status.closed and loop_runner is not None:
                self.sync(self._oxeo_abort)  # type: ignore[attr-defined]
        except BaseException as exc:
            logger.warning("Cleanup of cluster %r failed: %s", self._plan.name, exc)
        finally:
            if loop_runner is not None:
                with contextlib.suppress(Exception):
                    loop_runner.stop()


async def _started(process: Any) -> Any:
    """Await a ``ProcessInterface`` (its start), as a coroutine for ``ensure_future``."""
    return await process


class InheritEnvMixin:
    """A VM whose cloud-init inherits the cluster's private dask config and its role's TLS.

    With per-cluster TLS (`ClusterPlan.vm_tls`) the container command is wrapped in
    ``python -m oxeo_flows.dask_vm ROLE`` and its environment names the role's secret (secret
    delivery), or the inherited config carries the role's own pair (metadata delivery).
    """

    cluster: Any
    set_env: str
    command: str | None
    _oxeo_role: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from dask_cloudprovider.generic.vmcluster import SchedulerMixin

        new = self.cluster._oxeo_set_env()
        old = self.set_env
        tls = getattr(self.cluster._plan, "vm_tls", None)
        role = "scheduler" if isinstance(self, SchedulerMixin) else "worker"
        if tls is not None:
            new = tls.vm_env(new, role, self.cluster._oxeo_inherit)
        self.set_env = new
        if isinstance(self.command, str):
            command = self.command.replace(old, new, 1)
            if tls is not None:
                command = tls.wrap(command, new, role)
            self.command = command
        self._oxeo_role = role

    async def create_vm(self) -> Any:
        """Store the cluster's TLS secrets (once, before the first VM), then create the VM."""
        tls = getattr(self.cluster._plan, "vm_tls", None)
        if tls is not None:
            await self.cluster.call_async(tls.publish)
        return await super().create_vm()  # type: ignore[misc]

    async def close(self) -> None:
        """Destroy the VM; the scheduler's close deletes the cluster's TLS secrets."""
        if self._oxeo_role == "scheduler":
            self.cluster._oxeo_scheduler_closed = True  # the cluster's close need not sweep
        try:
            await super().close()  # type: ignore[misc]
        finally:
            tls = getattr(self.cluster._plan, "vm_tls", None)
            if tls is not None and self._oxeo_role == "scheduler":
                try:
                    await self.cluster.call_async(tls.delete)
                except Exception as exc:
                    logger.warning(
                        "Could not delete the TLS secrets of cluster %r: %s; run "
                        "`oxeo-flows clusters stop %s`",
                        self.cluster._plan.name,
                        exc,
                        self.cluster._plan.name,
                    )


class SchedulerWaitMixin:
    """A scheduler VM whose wait is non-blocking and bounded by the cluster's deadline."""

    cluster: Any
    address: str | None

    async def wait_for_scheduler(self) -> None:
        from oxeo_flows.clusters._hosts import parse_address

        address = getattr(self, "external_address", None) or self.address
        assert address is not None
        _scheme, host, port = parse_address(address)
        cluster = self.cluster
        cluster._oxeo_dialed = address
        instance = getattr(self, "instance", None)
        cluster._oxeo_vm = (
            instance.get("InstanceId")
            if isinstance(instance, dict)
            else getattr(self, "name", None)
        )
        probe = cluster._plan.probe or tcp_probe
        # The workers' VMs boot while we wait (EC2: the address is the one RunInstances gave).
        cluster._oxeo_boot_workers(getattr(self, "contact_address", None) or self.address)
        cluster._log(
            f"Waiting for scheduler at {address} (deadline {cluster._plan.start_timeout:g} s)"
        )
        check_alive = getattr(self, "oxeo_check_alive", None)
        next_check = time.monotonic() + ALIVE_CHECK_EVERY
        while True:
            cluster._oxeo_check_workers()
            now = time.monotonic()
            if check_alive is not None and now >= next_check:
                next_check = now + ALIVE_CHECK_EVERY  # every 0.5 s, however long a check takes
                await check_alive()  # raises ClusterError (with the console) if the VM stopped
            remaining = cluster._deadline.remaining()
            try:
                ok = await asyncio.wait_for(probe(host, port), max(0.001, min(remaining, 10.0)))
            except TimeoutError:
                ok = False
            if ok:
                cluster._log("Scheduler is running")
                return
            # The cluster's own deadline (asyncio.wait_for in _start) cancels this loop.
            pause = 0.2
            if check_alive is not None:
                pause = min(pause, max(0.0, next_check - time.monotonic()))
            await asyncio.sleep(pause)


LABEL_CLUSTER = "oxeo-flows-cluster"
LABEL_FLOW_RUN = "oxeo-flows-flow-run"
LABEL_STACK = "oxeo-flows-stack"
TAG_PREFIX = "oxeo-flows:"


def new_cluster_name() -> str:
    """A fresh cluster name, valid as a GCE label value and an EC2 tag value."""
    import secrets

    return f"oxeo-{secrets.token_hex(4)}"


def current_flow_run_id() -> str | None:
    """The id of the flow run this code runs in, if any."""
    try:
        from prefect.context import FlowRunContext
    except ImportError:  # pragma: no cover - prefect is a hard dependency
        return None
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    return str(ctx.flow_run.id)


def cluster_labels(name: str, flow_run_id: str | None, stack: str | None = None) -> dict[str, str]:
    """The labels every VM of a cluster carries (GCE spelling; EC2 tags use ``oxeo-flows:``)."""
    labels = {LABEL_CLUSTER: name, LABEL_FLOW_RUN: (flow_run_id or "none").lower()}
    if stack:
        labels[LABEL_STACK] = stack.lower()[:63]
    return labels
