"""Cold start of a private GCE Dask cluster, on the emulated Compute Engine.

Two ways to get a TLS cluster of one scheduler and N workers on the same emulator, with the
same injected delays (a VM boots in ``--boot`` seconds, its container starts ``--container``
seconds later):

- ``oxeo-flows``: ``dask_runner("gcp")`` from a stack whose ``gcp.endpoints.compute`` is the
  emulator; timed from entering the runner;
- ``dask-cloudprovider``: plain ``GCPCluster(asynchronous=True, ...)`` whose ``compute``
  attribute is set to the same kind of client (`oxeo_flows.clusters.gcp.compute_client`) before
  it starts (its constructor cannot be given an endpoint; no monkeypatching).

For each: seconds to the cluster object (scheduler reachable, worker VMs RUNNING), to a
connected client, and to N workers joined; and the Compute API call sequence. Everything runs
on loopback (the loopback guard is on).

Run: ``python benchmarks/cold_start.py [--workers 2] [--boot 1] [--container 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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

ZONE = "europe-west4-a"
IMAGE = "europe-west4-docker.pkg.dev/oxeo-test/flows/extract:1"


def _sequence(emulator: ComputeEmulator, t0: float) -> str:
    """The API calls as ``call×count @start-end s`` groups, in order."""
    out = []
    for (kind, target), group in itertools.groupby(
        emulator.call_times, key=lambda c: (c[1].split()[0], _role(c[1]))
    ):
        times = [t for t, _ in group]
        label = f"{kind} {target}".strip()
        span = f"@{times[0] - t0:.1f}" + (f"-{times[-1] - t0:.1f}" if len(times) > 1 else "")
        out.append(f"{label}×{len(times)} {span}s")
    return "; ".join(out)


def _role(call: str) -> str:
    if "scheduler" in call:
        return "scheduler"
    if "worker" in call:
        return "worker"
    return ""


def throwaway_service_account() -> dict[str, str]:
    """A fresh service-account key: GCPCluster's constructor needs credentials of some kind."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "client_email": "bench@oxeo-test.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "http://127.0.0.1:9/token",
        "project_id": "oxeo-test",
    }


def oxeo_flows_run(emulator: ComputeEmulator, workers: int) -> dict[str, float]:
    from oxeo_flows import dask_runner
    from oxeo_flows.stack import load_stack

    stack = load_stack(
        overrides={
            "gcp": {
                "project": "oxeo-test",
                "region": "europe-west4",
                "zone": ZONE,
                "network": "dask",
                "subnetwork": "dask",
                "endpoints": {"compute": emulator.endpoint},
            },
            "dask": {
                "backend": "gcp",
                "n-workers": workers,
                "start-timeout": 300,
                "gcp": {"docker-image": IMAGE},
            },
        }
    )
    runner: Any = dask_runner(stack=stack)
    t0 = time.monotonic()
    with runner:
        client = runner.client
        t_client = time.monotonic()
        client.wait_for_workers(workers, timeout=300)
        t_workers = time.monotonic()
        t_cluster = t_client  # the runner returns the client once the cluster is up
    return {"t0": t0, "cluster": t_cluster - t0, "client": t_client - t0, "workers": t_workers - t0}


def dask_cloudprovider_run(emulator: ComputeEmulator, workers: int) -> dict[str, float]:
    import dask.config
    from dask_cloudprovider.gcp import GCPCluster
    from distributed import Client

    from oxeo_flows.clusters.gcp import compute_client

    async def run() -> dict[str, float]:
        with dask.config.set({"cloudprovider.gcp.public_ingress": False}):
            t0 = time.monotonic()
            cluster = GCPCluster(
                projectid="oxeo-test",
                zone=ZONE,
                network="dask",
                network_projectid="oxeo-test",
                docker_image=IMAGE,
                n_workers=workers,
                scheduler_ngpus=0,
                worker_ngpus=0,
                service_account_credentials=throwaway_service_account(),
                asynchronous=True,
            )
            cluster.compute = compute_client(emulator.endpoint)
            await cluster
            t_cluster = time.monotonic()
            async with Client(cluster, asynchronous=True) as client:
                t_client = time.monotonic()
                await client.wait_for_workers(workers, timeout=300)
                t_workers = time.monotonic()
            await cluster.close()
        return {
            "t0": t0,
            "cluster": t_cluster - t0,
            "client": t_client - t0,
            "workers": t_workers - t0,
        }

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--boot", type=float, default=1.0, help="VM boot delay (s)")
    parser.add_argument("--container", type=float, default=2.0, help="container start delay (s)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    guard.enable()
    print(
        f"{args.workers} workers, VM boot {args.boot:g} s, container start {args.container:g} s, "
        f"median of {args.repeat}"
    )
    for name, fn in (
        ("oxeo-flows dask_runner", oxeo_flows_run),
        ("dask-cloudprovider GCPCluster", dask_cloudprovider_run),
    ):
        rows = []
        sequence = ""
        for _ in range(args.repeat):
            with ComputeEmulator(
                boot_delay=args.boot, container_start_delay=args.container
            ) as emulator:
                row = fn(emulator, args.workers)
                sequence = _sequence(emulator, row["t0"])
                emulator.wait_idle()
                assert emulator.vms == {}, emulator.vms
            rows.append(row)
        med = {k: statistics.median(r[k] for r in rows) for k in ("cluster", "client", "workers")}
        print(
            f"{name:32s} cluster {med['cluster']:5.1f} s | client {med['client']:5.1f} s | "
            f"{args.workers} workers joined {med['workers']:5.1f} s"
        )
        print(f"    calls (last run): {sequence}")


if __name__ == "__main__":
    main()
