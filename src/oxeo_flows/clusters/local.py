"""The ``local`` backend: an in-process Dask cluster tuned for small machines and tests."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require

if TYPE_CHECKING:
    from distributed import LocalCluster

__all__ = ["local_cluster"]


def local_cluster(
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = False,
    memory_limit: str | None = None,
    **kwargs: Any,
) -> LocalCluster:
    """Start a `distributed.LocalCluster` with cheap defaults.

    Prefect's default ``DaskTaskRunner()`` starts one worker *process* per core, which costs
    seconds at start-up and a serialisation round trip per task. For the tiny tasks of a
    local run, one in-process worker with a few threads per core is several times faster; pass
    ``processes=True`` for CPU-bound pure-Python tasks that need to escape the GIL.

    Args:
        n_workers: Number of workers (default 1 with threads, one per core with processes).
        threads_per_worker: Threads per worker (default: 4 per core, at most 32, with threads;
            cores / workers with processes).
        processes: Use worker processes instead of threads in this process.
        memory_limit: Per-worker memory limit, e.g. ``"4GiB"`` (default: no limit).
        **kwargs: Passed to `distributed.LocalCluster`.

    Returns:
        The running cluster.
    """
    distributed = require("distributed", "dask")
    cores = os.cpu_count() or 1
    workers = n_workers if n_workers is not None else (cores if processes else 1)
    # Prefect tasks spend much of their time on API round trips (task run creation, states,
    # results), so more threads than cores pay off: 4 per core measured best here (see
    # docs/benchmarks.md). With processes, one thread per core and worker.
    default_threads = max(1, cores // workers) if processes else min(32, 4 * cores)
    threads = threads_per_worker if threads_per_worker is not None else default_threads
    kwargs.setdefault("dashboard_address", None)
    kwargs.setdefault("silence_logs", logging.WARNING)
    cluster: LocalCluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=processes,
        memory_limit=memory_limit if memory_limit is not None else 0,
        **kwargs,
    )
    return cluster
