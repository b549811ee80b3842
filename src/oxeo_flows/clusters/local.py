"""The ``local`` backend: an in-process Dask cluster tuned for small machines and tests."""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from distributed import LocalCluster

__all__ = ["local_cluster"]

#: Where the scheduler's and workers' HTTP servers listen (Dask always starts one, for its
#: health and metrics routes, even with the dashboard off): loopback, on a free port.
_LOOPBACK_HTTP = "127.0.0.1:0"


def _check_loopback(dashboard_address: str) -> None:
    """Refuse a dashboard address that listens beyond this machine (``:8787``, ``0.0.0.0``)."""
    host, _, port = dashboard_address.rpartition(":")
    host = host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not port.isdigit():
        msg = (
            f"dashboard_address {dashboard_address!r} would serve the local Dask dashboard "
            "beyond this machine (it shows task code and data, and has no authentication); "
            "use a loopback address such as '127.0.0.1:8787'"
        )
        raise ConfigError(msg)


def local_cluster(
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = False,
    memory_limit: str | None = None,
    dashboard_address: str | None = None,
    profile: bool = False,
    **kwargs: Any,
) -> LocalCluster:
    """Start a `distributed.LocalCluster` with cheap defaults, reachable from this machine only.

    Prefect's default ``DaskTaskRunner()`` starts one worker *process* per core, which costs
    seconds at start-up and a serialisation round trip per task. For the tiny tasks of a
    local run, one in-process worker with a few threads per core is several times faster; pass
    ``processes=True`` for CPU-bound pure-Python tasks that need to escape the GIL.

    Dask's own default serves the dashboard on every interface (``0.0.0.0:8787``), and the
    workers' HTTP servers too. Here the dashboard is off and every HTTP server (Dask starts one
    for its health and metrics routes regardless) listens on ``127.0.0.1``, on a free port.

    Args:
        n_workers: Number of workers (default 1 with threads, one per core with processes).
        threads_per_worker: Threads per worker (default: 4 per core, at most 32, with threads;
            cores / workers with processes).
        processes: Use worker processes instead of threads in this process.
        memory_limit: Per-worker memory limit, e.g. ``"4GiB"`` (default: no limit).
        dashboard_address: Serve the dashboard (needs ``bokeh``) on this loopback address,
            e.g. ``"127.0.0.1:8787"``; default off.
        profile: Keep Dask's statistical profiler on the workers (every 10 ms it walks every
            worker thread's stack; for the dashboard's profile page). Default off: it cost
            ~0.5 ms a tiny task here (docs/benchmarks.md, "Fan-out").
        **kwargs: Passed to `distributed.LocalCluster`.

    Returns:
        The running cluster.

    Raises:
        ConfigError: ``dashboard_address`` is not a loopback address.
    """
    distributed = require("distributed", "dask")
    import dask

    cores = os.cpu_count() or 1
    workers = n_workers if n_workers is not None else (cores if processes else 1)
    # Prefect tasks spend much of their time on API round trips (task run creation, states,
    # results), so more threads than cores pay off: 4 per core measured best here (see
    # docs/benchmarks.md). With processes, one thread per core and worker.
    default_threads = max(1, cores // workers) if processes else min(32, 4 * cores)
    threads = threads_per_worker if threads_per_worker is not None else default_threads
    if dashboard_address is not None:
        _check_loopback(dashboard_address)
    scheduler_kwargs = dict(kwargs.pop("scheduler_kwargs", None) or {})
    scheduler_kwargs.setdefault("dashboard", dashboard_address is not None)
    scheduler_kwargs.setdefault("dashboard_address", dashboard_address or _LOOPBACK_HTTP)
    worker_dashboard = kwargs.pop("worker_dashboard_address", None) or _LOOPBACK_HTTP
    _check_loopback(worker_dashboard)
    kwargs.setdefault("silence_logs", logging.WARNING)
    with dask.config.set({"distributed.worker.profile.enabled": profile}):
        # Workers read the setting when they start (in this process, or inherited by spawned
        # worker processes through the config).
        cluster: LocalCluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=processes,
            memory_limit=memory_limit if memory_limit is not None else 0,
            dashboard_address=dashboard_address or _LOOPBACK_HTTP,
            worker_dashboard_address=worker_dashboard,
            scheduler_kwargs=scheduler_kwargs,
            **kwargs,
        )
    return cluster
