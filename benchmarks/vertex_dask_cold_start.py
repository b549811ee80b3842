"""Cold start of the ``vertex`` Dask backend (workers inside the flow run's Vertex job).

The replicas of a Vertex job start together: the flow run (replica 0, which hosts the
scheduler) and the Dask worker replicas each pay one machine start. This measures, on loopback
with the same injected delays as ``benchmarks/cold_start.py`` (a machine boots in ``--boot``
seconds, its container starts ``--container`` seconds later), the time from the job's start to N
workers joined: replica 0 runs `oxeo_flows.clusters.vertex.vertex_cluster` in this process
(certificates, the per-job secret in the emulated Secret Manager, the TLS scheduler); each
worker replica is a real ``python -m oxeo_flows.vertex_worker`` process with its own
``CLUSTER_SPEC`` and loopback address, started after the same delay.

Compare with the ``gcp`` backend row of ``benchmarks/cold_start.py`` (scheduler VM, then worker
VMs: two boots in a row). Everything runs on loopback (the loopback guard is on).

Run: ``python benchmarks/vertex_dask_cold_start.py [--workers 2] [--boot 1] [--container 2]
[--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

for _key, _value in {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
}.items():
    os.environ.setdefault(_key, _value)

from oxeo_flows.testing import guard  # noqa: E402
from oxeo_flows.testing.secretmanager import SecretManagerEmulator  # noqa: E402

PROJECT = "oxeo-bench"


def _spec(hosts: dict[str, list[str]], kind: str, index: int, job: str) -> str:
    task = {"type": kind, "index": index}
    return json.dumps({"cluster": hosts, "task": task, "job": json.dumps({"job_name": job})})


def once(workers: int, delay: float, endpoint: str, run: int) -> tuple[float, float]:
    """Seconds from the job's start to the scheduler up, and to every worker joined."""
    from oxeo_flows.clusters.vertex import vertex_cluster

    hosts = {
        "workerpool0": [f"127.40.{run}.1:2222"],
        "workerpool1": [f"127.40.{run}.{i + 2}:2222" for i in range(workers)],
    }
    job = f"bench-{run}-{time.time_ns()}"
    t0 = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []

    def start_workers() -> None:
        time.sleep(delay)  # the worker replicas boot at the same time as replica 0
        for index in range(workers):
            env = dict(os.environ, CLUSTER_SPEC=_spec(hosts, "workerpool1", index, job))
            env["CLOUD_ML_JOB_ID"] = job
            command = [sys.executable, "-m", "oxeo_flows.vertex_worker", "--project", PROJECT]
            command += ["--secret-manager-endpoint", endpoint, "--timeout", "60"]
            procs.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))

    threading.Thread(target=start_workers, daemon=True).start()
    time.sleep(delay)
    os.environ["CLUSTER_SPEC"] = _spec(hosts, "workerpool0", 0, job)
    os.environ["CLOUD_ML_JOB_ID"] = job
    cluster = vertex_cluster(
        n_workers=workers,
        project=PROJECT,
        start_timeout=60,
        scheduler_port=8786,
        secret_manager_endpoint=endpoint,
    )
    joined = time.monotonic() - t0
    cluster.close()
    for proc in procs:
        proc.wait(timeout=30)
    return delay, joined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--boot", type=float, default=1.0, help="machine boot delay (s)")
    parser.add_argument("--container", type=float, default=2.0, help="container start (s)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    guard.install()
    joined = []
    with SecretManagerEmulator() as secrets:
        for run in range(args.repeat):
            _, seconds = once(args.workers, args.boot + args.container, secrets.endpoint, run)
            joined.append(seconds)
            print(f"run {run + 1}: {args.workers} workers joined at {seconds:.1f} s", flush=True)
    print(
        f"vertex backend, {args.workers} workers, boot {args.boot:g} s + container "
        f"{args.container:g} s: workers joined {statistics.median(joined):.1f} s (median of "
        f"{args.repeat}); one machine start = {args.boot + args.container:g} s"
    )


if __name__ == "__main__":
    main()
