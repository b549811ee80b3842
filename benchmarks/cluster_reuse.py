"""Cluster-ready time of a reused named GCE cluster vs a cold start, on the emulated GCP.

One stack with ``dask.reuse = true`` and ``dask.cluster-name``, on the emulated Compute Engine
(a VM boots in ``--boot`` seconds, its container starts ``--container`` seconds later) and the
emulated Secret Manager. Run 1 (cold) starts the cluster and detaches from it; run 2 (reuse)
finds it by its labels, reads the client's TLS pair from the per-cluster secret and connects.
For each: seconds from entering the runner to a connected client, and to N workers joined.
Then ``clusters stop`` (`oxeo_flows.clusters.reuse.stop_cluster`) deletes everything. Loopback
only (the loopback guard is on).

Run: ``python benchmarks/cluster_reuse.py [--workers 1] [--boot 1] [--container 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

for _key, _value in {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_key, _value)

from oxeo_flows.testing import guard  # noqa: E402
from oxeo_flows.testing.compute import ComputeEmulator  # noqa: E402
from oxeo_flows.testing.secretmanager import SecretManagerEmulator  # noqa: E402


def _stack(compute: ComputeEmulator, sm: SecretManagerEmulator, workers: int, name: str) -> Any:
    from oxeo_flows.stack import load_stack

    return load_stack(
        overrides={
            "gcp": {
                "project": "oxeo-test",
                "region": "europe-west4",
                "zone": "europe-west4-a",
                "network": "dask",
                "subnetwork": "dask",
                "endpoints": {"compute": compute.endpoint, "secret-manager": sm.endpoint},
            },
            "dask": {
                "backend": "gcp",
                "n-workers": workers,
                "start-timeout": 300,
                "cluster-name": name,
                "reuse": True,
                "gcp": {"docker-image": "europe-west4-docker.pkg.dev/oxeo-test/flows/x:1"},
            },
        }
    )


def _ready(stack: Any, workers: int) -> dict[str, float]:
    from oxeo_flows import dask_runner

    runner: Any = dask_runner(stack=stack)
    t0 = time.monotonic()
    with runner:
        client = runner.client
        t_client = time.monotonic()
        client.wait_for_workers(workers, timeout=300)
        t_workers = time.monotonic()
    return {"client": t_client - t0, "workers": t_workers - t0}


def main() -> None:
    """Print the median cold and reused cluster-ready times."""
    from oxeo_flows.clusters.reuse import stop_cluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--boot", type=float, default=1.0, help="VM boot delay (s)")
    parser.add_argument("--container", type=float, default=2.0, help="container start delay (s)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    guard.enable()
    print(
        f"{args.workers} worker(s), VM boot {args.boot:g} s, container start "
        f"{args.container:g} s, median of {args.repeat}"
    )
    rows: dict[str, list[dict[str, float]]] = {"cold": [], "reuse": []}
    for i in range(args.repeat):
        with (
            ComputeEmulator(boot_delay=args.boot, container_start_delay=args.container) as compute,
            SecretManagerEmulator() as sm,
        ):
            stack = _stack(compute, sm, args.workers, f"bench-{i}")
            rows["cold"].append(_ready(stack, args.workers))
            inserts = sum(c.startswith("insert ") for c in compute.calls)
            rows["reuse"].append(_ready(stack, args.workers))
            assert sum(c.startswith("insert ") for c in compute.calls) == inserts
            stop_cluster(f"bench-{i}", stack=stack)
            compute.wait_idle()
            assert compute.vms == {}
            assert sm.secrets == {}
    for kind, label in (("cold", "run 1 (cold start)"), ("reuse", "run 2 (reuse)")):
        med = {k: statistics.median(r[k] for r in rows[kind]) for k in ("client", "workers")}
        print(
            f"{label:20s} client {med['client']:5.2f} s | {args.workers} worker(s) joined "
            f"{med['workers']:5.2f} s"
        )


if __name__ == "__main__":
    main()
