"""Local task runners: ``dask_runner()``, ``ThreadPoolTaskRunner``, ``DaskTaskRunner()`` defaults.

Usage: python benchmarks/local_runner.py [--tasks 50 500] [--repeats 3]
Each run is a fresh flow run of N tiny tasks against one Prefect test server (started once);
the cluster start-up is included, as a user pays it on every flow run. Runners are interleaved
within each repeat, and before every run the script waits ``--settle`` seconds: the test
server (a subprocess on the same cores) keeps processing the previous run's events, and
without the pause each run pays for its predecessor's backlog (measured: the same thread-pool
run took 1.1 s on a quiet server and 3 s right after another run). Prints the median wall
time per runner and task count, and the ratios the foundation issue targets:
dask_runner() <= 1.5x ThreadPoolTaskRunner on 50 tasks, and >= 4x faster than DaskTaskRunner().
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.testing.utilities import prefect_test_harness
from prefect_dask import DaskTaskRunner

from oxeo_flows import dask_runner


@task
def inc(x: int) -> int:
    return x + 1


def run_once(make_runner: Callable[[], Any], n: int) -> float:
    @flow(task_runner=make_runner())
    def tiny(n: int) -> int:
        return sum(inc.map(range(n)).result())

    started = time.perf_counter()
    total = tiny(n)
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds to wait before each run")
    parser.add_argument(
        "--skip-defaults-above",
        type=int,
        default=50,
        help="DaskTaskRunner() defaults are slow: only run them up to this many tasks",
    )
    args = parser.parse_args()
    runners: dict[str, Callable[[], Any]] = {
        "ThreadPoolTaskRunner()": ThreadPoolTaskRunner,
        "dask_runner()": dask_runner,
        "DaskTaskRunner() defaults": DaskTaskRunner,
    }
    results: dict[tuple[str, int], float] = {}
    with prefect_test_harness(server_startup_timeout=120):
        # One warm-up run per runner: the first flow run in a process pays one-time imports
        # (distributed, prefect-dask: seconds), which is not a per-flow-run cost. Shown apart.
        for label, make in runners.items():
            time.sleep(args.settle)
            print(f"{label:28s} first (cold) run: {run_once(make, 5):.2f} s", flush=True)
        for n in args.tasks:
            samples: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for label, make in runners.items():
                    if label.startswith("DaskTaskRunner()") and n > args.skip_defaults_above:
                        continue
                    time.sleep(args.settle)
                    samples.setdefault(label, []).append(run_once(make, n))
            for label, times in samples.items():
                results[(label, n)] = statistics.median(times)
                print(
                    f"{label:28s} {n:4d} tasks  median {results[(label, n)]:6.2f} s  "
                    f"(runs: {', '.join(f'{t:.2f}' for t in times)})",
                    flush=True,
                )
    for n in args.tasks:
        ours = results[("dask_runner()", n)]
        threads = results[("ThreadPoolTaskRunner()", n)]
        ratio = ours / threads
        print(f"\n{n} tasks: dask_runner() / thread pool = {ratio:.2f}x (target <= 1.5 on 50)")
        if ("DaskTaskRunner() defaults", n) in results:
            default = results[("DaskTaskRunner() defaults", n)]
            speedup = default / ours
            print(f"{n} tasks: DaskTaskRunner() / dask_runner() = {speedup:.2f}x (target >= 4)")


if __name__ == "__main__":
    main()
