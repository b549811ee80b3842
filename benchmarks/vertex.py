"""Benchmark of the Vertex helpers: job-variable rendering, and pool ensure round trips.

Prints:
1. the cost of ``vertex_job(stack=...)`` (build + validate) and of ``job_variables()``
   (render), median and p99 over many calls; and of ``load_stack()`` + both, as a deploy does;
2. Prefect API requests made by ``ensure_vertex_pool`` for a new pool, then for the same,
   unchanged pool (target: 1 read, 0 writes), and for a pool with one changed default,
   counted at httpx on a real Prefect server (``prefect_test_harness``, SQLite, 127.0.0.1);
3. the wall time of the unchanged ensure (the worker type's default template included).

Run: python benchmarks/vertex.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")

STACK = """
[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.prod]
runner = "vertex"

[tool.oxeo-flows.stacks.prod.gcp]
project = "oxeo-bench"
project-number = "123456789012"
region = "europe-west4"
network = "dask"
reserved-ip-ranges = ["vertex-peering"]
service-account = "runner@oxeo-bench.iam.gserviceaccount.com"

[tool.oxeo-flows.stacks.prod.vertex]
image = "europe-docker.pkg.dev/oxeo-bench/flows/extract:1"
accelerator-type = "NVIDIA_L4"
labels = { team = "flows" }
env = { SAT_TOKEN_SECRET = "sat-extractor-sa" }
api-key-secret = "prefect-api-key"
"""


def _timed(fn: Any, calls: int) -> tuple[float, float]:
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99) - 1] * 1e6


def rendering(project: Path, calls: int) -> None:
    from oxeo_flows import vertex_job
    from oxeo_flows.stack import load_stack

    stack = load_stack(project_dir=project)
    job = vertex_job(stack=stack)
    build = _timed(lambda: vertex_job(stack=stack), calls)
    render = _timed(job.job_variables, calls)
    full = _timed(
        lambda: vertex_job(stack=load_stack(project_dir=project)).job_variables(), calls // 4
    )
    print("1. rendering (microseconds, median / p99)")
    print(f"   vertex_job(stack=...)              {build[0]:8.1f} / {build[1]:8.1f}")
    print(f"   job.job_variables()                {render[0]:8.1f} / {render[1]:8.1f}")
    print(f"   load_stack() + build + render      {full[0]:8.1f} / {full[1]:8.1f}")


def round_trips(project: Path) -> None:
    import httpx
    from prefect.testing.utilities import prefect_test_harness

    from oxeo_flows import ensure_vertex_pool, vertex_job
    from oxeo_flows.stack import load_stack

    seen: list[tuple[str, str]] = []
    send = httpx.Client.send

    def counting_send(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return send(self, request, **kw)

    httpx.Client.send = counting_send  # type: ignore[method-assign]
    stack = load_stack(project_dir=project)
    job = vertex_job(stack=stack)
    print("2. Prefect API requests of ensure_vertex_pool (real server, counted at httpx)")
    with prefect_test_harness(server_startup_timeout=120):
        for label, the_job in (
            ("new pool", job),
            ("unchanged pool", job),
            ("one default changed", vertex_job(stack=stack, machine_type="n1-standard-8")),
        ):
            seen.clear()
            t0 = time.perf_counter()
            result = ensure_vertex_pool("bench-vertex", the_job)
            elapsed = (time.perf_counter() - t0) * 1e3
            pool_calls = [(m, p) for m, p in seen if "/work_pools" in p]
            reads = sum(1 for m, _ in pool_calls if m == "GET")
            writes = len(pool_calls) - reads
            other = Counter(p for _, p in seen if "/work_pools" not in p)
            print(
                f"   {label:22s} -> {result.action:9s} pool reads {reads}, pool writes {writes}, "
                f"other requests {dict(other) or 0}, {elapsed:7.1f} ms"
            )
        unchanged = []
        for _ in range(20):
            t0 = time.perf_counter()
            ensure_vertex_pool("bench-vertex", job)
            unchanged.append((time.perf_counter() - t0) * 1e3)
        median = statistics.median(unchanged)
        print(f"3. unchanged ensure wall time: median {median:.1f} ms (20 calls)")


def main() -> None:
    """Parse arguments and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pyproject.toml").write_text(STACK, encoding="utf-8")
        rendering(project, args.calls)
        round_trips(project)


if __name__ == "__main__":
    main()
