"""Cold start of a private Dask cluster, on the emulated Compute Engine and EC2.

Ways to get a TLS cluster of one scheduler and N workers on the same emulator, with the same
injected delays (a VM boots in ``--boot`` seconds, its container starts ``--container``
seconds later):

- ``oxeo-flows parallel``: ``dask_runner("gcp"|"ec2")`` from a stack whose endpoints are the
  emulator (worker VMs created while the scheduler boots, the default); timed from entering
  the runner;
- ``oxeo-flows no Nanny``: parallel boot with ``dask.nanny = false`` (one interpreter per
  worker VM instead of two);
- ``oxeo-flows serial``: the same with ``dask.parallel-boot = false`` (dask-cloudprovider's
  order: worker VMs after the scheduler answers);
- ``dask-cloudprovider``: plain ``GCPCluster`` / ``EC2Cluster`` (GCE: its ``compute``
  attribute set to the same kind of client before it starts, `compute_client`; EC2: moto via
  ``AWS_ENDPOINT_URL``); no monkeypatching;
- fail fast: the scheduler's container dies at boot; seconds to the `ClusterError`, from the
  start and from the container's exit (issue 12: <= 2 s).

For each: seconds to the cluster object, to a connected client, and to N workers joined, and
the target ratio ``joined / (boot + container)`` (issue 12: <= 1.15 + 0.5 s / (boot +
container)); the cloud API call sequence (Compute / EC2, as each emulator records it).
Everything runs on loopback (the loopback guard is on), on the emulators' own addresses
(127.10.120.x, 127.120.1.x).

Every emulated VM runs on this host's cores, so the parallel rows also print what the VMs'
processes cost: seconds from each container's start to its scheduler answering / its workers
joined, their CPU-seconds, and the floor that CPU puts on this host (all VMs start at once and
share the cores). ``each VM alone`` measures the same container-start-to-ready spans with one
VM starting at a time (serial boot, 1 worker), and projects the parallel run onto VMs with
their own vCPUs, as on a cloud: each VM's container start in the parallel run plus its role's
span alone.

Run: ``python benchmarks/cold_start.py [--workers 2] [--boot 1] [--container 2] [--repeat 3]
[--cloud gcp ec2]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

for _key, _value in {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}.items():
    os.environ.setdefault(_key, _value)

from oxeo_flows.testing import guard  # noqa: E402
from oxeo_flows.testing.compute import ComputeEmulator  # noqa: E402
from oxeo_flows.testing.ec2 import EC2Emulator  # noqa: E402

ZONE = "europe-west4-a"
IMAGE = "europe-west4-docker.pkg.dev/oxeo-test/flows/extract:1"


def _sequence(emulator: ComputeEmulator | EC2Emulator, t0: float) -> str:
    """The API calls as ``call×count @start-end s`` groups, in order."""
    out = []
    calls = [c for c in emulator.call_times if c[0] >= t0]  # not the benchmark's own set-up
    for (kind, target), group in itertools.groupby(
        calls, key=lambda c: (c[1].split()[0], _role(c[1]))
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


def _gce_stack(
    emulator: ComputeEmulator, workers: int, *, parallel: bool, nanny: bool = True
) -> Any:
    from oxeo_flows.stack import load_stack

    return load_stack(
        overrides={
            "gcp": {
                "project": "oxeo-test",
                "region": "europe-west4",
                "zone": ZONE,
                "network": "dask",
                "subnetwork": "dask",
                "endpoints": {
                    "compute": emulator.endpoint,
                    "secret-manager": SECRET_MANAGER["endpoint"],
                },
            },
            "dask": {
                "backend": "gcp",
                "n-workers": workers,
                "start-timeout": 300,
                "parallel-boot": parallel,
                "nanny": nanny,
                "gcp": {"docker-image": IMAGE},
            },
        }
    )


def _ec2_stack(emulator: EC2Emulator, workers: int, *, parallel: bool, nanny: bool = True) -> Any:
    from oxeo_flows.stack import load_stack

    ami = emulator.client().describe_images()["Images"][0]["ImageId"]
    return load_stack(
        overrides={
            "aws": {
                "region": emulator.region,
                "vpc": emulator.vpc_id,
                "subnets": [emulator.subnet_id],
                "security-groups": [emulator.security_group_id],
                "endpoint-url": emulator.endpoint_url,
            },
            "dask": {
                "backend": "ec2",
                "n-workers": workers,
                "start-timeout": 300,
                "parallel-boot": parallel,
                "nanny": nanny,
                "ec2": {"docker-image": IMAGE, "ami": ami},
            },
        }
    )


def _vm_cpu(emulator: Any) -> float:
    """CPU-seconds used so far by every process of every VM (their process groups)."""
    groups = {m.container.pid for m in emulator.machines() if m.container is not None}
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) in groups:  # pgrp, then utime and stime in clock ticks
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _container_starts(emulator: Any, t0: float) -> dict[str, list[float]]:
    """Seconds from ``t0`` to each VM's container start, by role."""
    out: dict[str, list[float]] = {"scheduler": [], "worker": []}
    for machine in emulator.machines():
        if machine.container_started_at is not None and machine.role in out:
            out[machine.role].append(machine.container_started_at - t0)
    return out


#: The console line that says a VM's Dask process is ready, by role.
_READY = {"scheduler": "Scheduler at:", "worker": "Registered to:"}


def _spans(emulator: Any) -> dict[str, list[float]]:
    """Each VM's container start to its ready line (distributed's own log time), by role."""
    to_monotonic = time.monotonic() - time.time()
    out: dict[str, list[float]] = {"scheduler": [], "worker": []}
    for machine in emulator.machines():
        marker = _READY.get(machine.role)
        if marker is None or machine.container_started_at is None:
            continue
        for line in machine.serial_output().splitlines():
            if marker in line:
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                ready = stamp.timestamp() + to_monotonic
                out[machine.role].append(ready - machine.container_started_at)
                break
    return out


def oxeo_flows_run(
    emulator: Any, workers: int, *, parallel: bool = True, nanny: bool = True
) -> dict[str, Any]:
    from oxeo_flows import dask_runner

    if isinstance(emulator, ComputeEmulator):
        stack = _gce_stack(emulator, workers, parallel=parallel, nanny=nanny)
    else:
        stack = _ec2_stack(emulator, workers, parallel=parallel, nanny=nanny)
    runner: Any = dask_runner(stack=stack)
    t0 = time.monotonic()
    with runner:
        client = runner.client
        t_client = time.monotonic()
        client.wait_for_workers(workers, timeout=300)
        t_workers = time.monotonic()
        t_cluster = t_client  # the runner returns the client once the cluster is up
        vm_cpu = _vm_cpu(emulator)
        starts = _container_starts(emulator, t0)
        spans = _spans(emulator)
    last_start = max(starts["worker"])
    registered = last_start + max(spans["worker"])  # roughly: the slowest worker's start
    return {
        "t0": t0,
        "cluster": t_cluster - t0,
        "client": t_client - t0,
        "workers": t_workers - t0,
        "vm_cpu": vm_cpu,
        "starts": starts,
        # Container start -> "Scheduler at" / "Registered to" in the VM's console (slowest).
        "scheduler_span": max(spans["scheduler"]),
        "worker_span": max(spans["worker"]),
        "join_lag": max(0.0, t_workers - t0 - registered),
    }


def alone_run(emulator: Any) -> dict[str, float]:
    """Container start to ready of a scheduler, then of one worker, each starting alone.

    Serial boot: the worker VM is created once the scheduler answers, so each starts with the
    host's cores to itself (the worker's span includes registering with the running scheduler).
    """
    row = oxeo_flows_run(emulator, 1, parallel=False)
    return {"scheduler": row["scheduler_span"], "worker": row["worker_span"]}


def projected(row: dict[str, Any], alone: dict[str, float]) -> float:
    """Joined if each VM of ``row`` had its own vCPUs: its container start + its span alone.

    A worker registers once the scheduler listens, so a worker is ready at the later of its
    own span and the scheduler's; the client's join check adds ``row``'s own lag (joined -
    the last registration).
    """
    listens = max(t + alone["scheduler"] for t in row["starts"]["scheduler"])
    ready = [max(listens, t + alone["worker"]) for t in row["starts"]["worker"]]
    return max(ready) + row["join_lag"]


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


def dask_cloudprovider_ec2_run(emulator: EC2Emulator, workers: int) -> dict[str, float]:
    from dask_cloudprovider.aws import EC2Cluster
    from distributed import Client

    ami = emulator.client().describe_images()["Images"][0]["ImageId"]
    os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint_url

    async def run() -> dict[str, float]:
        t0 = time.monotonic()
        cluster = EC2Cluster(
            region=emulator.region,
            vpc=emulator.vpc_id,
            subnet_id=emulator.subnet_id,
            security_groups=[emulator.security_group_id],
            ami=ami,
            docker_image=IMAGE,
            n_workers=workers,
            use_private_ip=True,
            asynchronous=True,
        )
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

    try:
        return asyncio.run(run())
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)


def fail_fast_run(emulator: Any, workers: int) -> tuple[float, float]:
    """Seconds from entering the runner, and from the container's death, to the `ClusterError`.

    The scheduler's container dies as it starts (`die_at_boot`); the error comes once the
    instance is seen stopped, its console read and every VM deleted.
    """
    from oxeo_flows import dask_runner
    from oxeo_flows.errors import ClusterError

    emulator.die_at_boot("scheduler")
    if isinstance(emulator, ComputeEmulator):
        stack = _gce_stack(emulator, workers, parallel=True)
    else:
        stack = _ec2_stack(emulator, workers, parallel=True)
    runner: Any = dask_runner(stack=stack)
    seen: dict[str, Any] = {}
    done = threading.Event()

    def watch() -> None:  # the emulator forgets a VM once it is deleted
        while not done.wait(0.02):
            seen.update((m.name, m) for m in emulator.machines() if m.role == "scheduler")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        with runner:
            _client = runner.client  # the cluster starts here
    except ClusterError:
        failed = time.monotonic()
        done.set()
        watcher.join()
        died = [m.container_exited_at for m in seen.values() if m.container_exited_at]
        return failed - t0, failed - max(died) if died else float("nan")
    msg = "the cluster started although its scheduler died"
    raise AssertionError(msg)


def _cost_line(rows: list[dict[str, Any]]) -> str:
    """What the VMs' processes cost in the parallel runs (medians), and this host's floor."""
    cores = len(os.sched_getaffinity(0))
    sched = statistics.median(r["scheduler_span"] for r in rows)
    worker = statistics.median(r["worker_span"] for r in rows)
    cpu = statistics.median(r["vm_cpu"] for r in rows)
    floor = statistics.median(min(r["starts"]["scheduler"]) + r["vm_cpu"] / cores for r in rows)
    return (
        f"    container start -> scheduler listens {sched:.2f} s, -> worker registered "
        f"{worker:.2f} s (slowest); the VMs' processes used {cpu:.1f} CPU-s, so on this host's "
        f"{cores} cores joined >= {floor:.1f} s"
    )


def _emulator(cloud: str, args: argparse.Namespace) -> Any:
    if cloud == "gcp":
        return ComputeEmulator(
            boot_delay=args.boot, container_start_delay=args.container, address_prefix="127.10.120"
        )
    return EC2Emulator(
        boot_delay=args.boot, container_start_delay=args.container, network="127.120"
    )


def _idle(emulator: Any) -> None:
    emulator.wait_idle()
    if isinstance(emulator, ComputeEmulator):
        assert emulator.vms == {}, emulator.vms
    else:
        deadline = time.monotonic() + 10
        while emulator.live_instances() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert emulator.live_instances() == [], emulator.live_instances()


#: The emulated Secret Manager the GCE VMs read their TLS certificates from (set in main).
SECRET_MANAGER: dict[str, str] = {}


def main() -> None:
    from oxeo_flows.testing.secretmanager import SecretManagerEmulator

    with SecretManagerEmulator() as secrets:
        SECRET_MANAGER["endpoint"] = secrets.endpoint
        _main()


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--boot", type=float, default=1.0, help="VM boot delay (s)")
    parser.add_argument("--container", type=float, default=2.0, help="container start delay (s)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cloud", nargs="+", default=["gcp", "ec2"], choices=["gcp", "ec2"])
    args = parser.parse_args()
    guard.enable()
    inevitable = args.boot + args.container
    target = 1.15 * inevitable + 0.5
    print(
        f"{args.workers} workers, VM boot {args.boot:g} s, container start {args.container:g} s, "
        f"median of {args.repeat}; target: joined <= {target:.2f} s "
        f"(ratio <= {target / inevitable:.2f})"
    )
    for cloud in args.cloud:
        ways: list[tuple[str, Any]] = [
            (f"oxeo-flows {cloud} parallel", lambda e, n: oxeo_flows_run(e, n, parallel=True)),
            (
                f"oxeo-flows {cloud} no Nanny",
                lambda e, n: oxeo_flows_run(e, n, parallel=True, nanny=False),
            ),
            (f"oxeo-flows {cloud} serial", lambda e, n: oxeo_flows_run(e, n, parallel=False)),
            (
                f"dask-cloudprovider {'GCPCluster' if cloud == 'gcp' else 'EC2Cluster'}",
                dask_cloudprovider_run if cloud == "gcp" else dask_cloudprovider_ec2_run,
            ),
        ]
        parallel_rows: list[dict[str, Any]] = []
        for name, fn in ways:
            rows = []
            sequence = ""
            for _ in range(args.repeat):
                with _emulator(cloud, args) as emulator:
                    row = fn(emulator, args.workers)
                    sequence = _sequence(emulator, row["t0"])
                    _idle(emulator)
                rows.append(row)
            med = {
                k: statistics.median(r[k] for r in rows) for k in ("cluster", "client", "workers")
            }
            print(
                f"{name:32s} cluster {med['cluster']:5.1f} s | client {med['client']:5.1f} s | "
                f"{args.workers} workers joined {med['workers']:5.1f} s | "
                f"ratio {med['workers'] / inevitable:4.2f}"
            )
            if name.endswith(("parallel", "no Nanny")):
                print(_cost_line(rows))
            if name.endswith("parallel"):
                parallel_rows = rows
            if sequence:
                print(f"    calls (last run): {sequence}")
        alone_rows = []
        for _ in range(args.repeat):
            with _emulator(cloud, args) as emulator:
                alone_rows.append(alone_run(emulator))
                _idle(emulator)
        alone = {k: statistics.median(r[k] for r in alone_rows) for k in ("scheduler", "worker")}
        guess = statistics.median(projected(r, alone) for r in parallel_rows)
        print(
            f"{'oxeo-flows ' + cloud + ' each VM alone':32s} container start -> scheduler "
            f"listens {alone['scheduler']:.2f} s, -> worker registered {alone['worker']:.2f} s\n"
            f"    parallel boot with a VM's own vCPUs (as on a cloud): {args.workers} workers "
            f"joined ~{guess:.1f} s | ratio {guess / inevitable:4.2f} (target "
            f"<= {target / inevitable:.2f})"
        )
        fails = []
        for _ in range(args.repeat):
            with _emulator(cloud, args) as emulator:
                fails.append(fail_fast_run(emulator, args.workers))
                _idle(emulator)
        print(
            f"{'oxeo-flows ' + cloud + ' fail fast':32s} dead scheduler container -> "
            f"ClusterError in {statistics.median(f[0] for f in fails):4.1f} s, "
            f"{statistics.median(f[1] for f in fails):.2f} s after it died (every VM deleted; "
            "target <= 2 s)"
        )


if __name__ == "__main__":
    main()
