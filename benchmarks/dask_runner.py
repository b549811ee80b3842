"""``dask_runner(address)`` overhead, and time to `ClusterStartTimeout` for unreachable schedulers.

Usage: python benchmarks/dask_runner.py [--tasks 200] [--repeats 3] [--deadline 2] [--cap 35]

1. Overhead: a flow of N tiny tasks against an existing TLS LocalCluster on 127.0.0.1, with
   ``dask_runner("address", ...)`` (probe + TLS from files) vs a raw
   ``DaskTaskRunner(address=..., client_kwargs={"security": ...})``. Median wall time of
   ``--repeats`` alternating runs; target ratio <= 1.05.
2. Unreachable schedulers (refused port; a loopback port that accepts and never answers, on
   tcp:// and tls://): seconds until ``dask_runner`` raises `ClusterStartTimeout` with
   ``start_timeout=--deadline`` (target <= deadline + 1 s), and until plain prefect-dask gives
   up (measured in abandoned threads, capped at ``--cap`` seconds).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from distributed import LocalCluster
from distributed.security import Security
from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness
from prefect_dask import DaskTaskRunner

from oxeo_flows import ClusterStartTimeout, dask_runner


@task
def inc(x: int) -> int:
    return x + 1


def run_flow(runner: Any, n: int) -> float:
    @flow(task_runner=runner)
    def tiny(n: int) -> int:
        return sum(inc.map(range(n)).result())

    started = time.perf_counter()
    assert tiny(n) == sum(range(1, n + 1))
    return time.perf_counter() - started


def tls_setup(directory: Path) -> tuple[Security, dict[str, str]]:
    sec = Security.temporary()
    files = {}
    for name, value in (
        ("ca", sec.tls_ca_file),
        ("cert", sec.tls_client_cert),
        ("key", sec.tls_client_key),
    ):
        path = directory / f"{name}.pem"
        path.write_text(value)
        path.chmod(0o600)
        files[name] = str(path)
    return sec, files


class Silent:
    """Accepts connections on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_ours(address: str, deadline: float, tls: dict[str, str] | None) -> float:
    kwargs: dict[str, Any] = {"start_timeout": deadline}
    if tls:
        kwargs["tls"] = {"ca_file": tls["ca"], "cert_file": tls["cert"], "key_file": tls["key"]}
    runner = dask_runner("address", address=address, **kwargs)
    started = time.perf_counter()
    try:
        with runner.duplicate() as r:
            r.client  # noqa: B018
    except ClusterStartTimeout:
        return time.perf_counter() - started
    raise AssertionError("connected?")


def time_plain(
    address: str, security: Security | None, cap: float, out: dict[str, str], key: str
) -> None:
    started = time.perf_counter()

    def attempt() -> None:
        try:
            with DaskTaskRunner(
                address=address, client_kwargs={"security": security} if security else {}
            ) as r:
                r.client  # noqa: B018
        except Exception as exc:
            out[key] = f"{time.perf_counter() - started:.1f} s ({type(exc).__name__})"
            return
        out[key] = "connected?"

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(cap)
    if thread.is_alive():
        out[key] = f"> {cap:g} s (still hanging, abandoned)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--cap", type=float, default=35.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    sec, files = tls_setup(tmp)
    server_sec = Security(
        tls_ca_file=sec.tls_ca_file,
        tls_scheduler_cert=sec.tls_scheduler_cert,
        tls_scheduler_key=sec.tls_scheduler_key,
        tls_worker_cert=sec.tls_worker_cert,
        tls_worker_key=sec.tls_worker_key,
        tls_client_cert=sec.tls_client_cert,
        tls_client_key=sec.tls_client_key,
        require_encryption=True,
    )
    client_sec = Security(
        tls_ca_file=files["ca"],
        tls_client_cert=files["cert"],
        tls_client_key=files["key"],
        require_encryption=True,
    )
    silent = Silent()
    refused = free_port()
    plain: dict[str, str] = {}
    modes = {
        "refused tcp://": (f"tcp://127.0.0.1:{refused}", None),
        "silent tcp://": (f"tcp://127.0.0.1:{silent.port}", None),
        "silent tls://": (f"tls://127.0.0.1:{silent.port}", files),
    }
    # Plain prefect-dask attempts run in the background while we measure the rest.
    for label, (address, tls) in modes.items():
        threading.Thread(
            target=time_plain,
            args=(address, client_sec if tls else None, args.cap, plain, label),
            daemon=True,
        ).start()
    with (
        prefect_test_harness(server_startup_timeout=120),
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tls",
            host="127.0.0.1",
            security=server_sec,
            dashboard_address=None,
        ) as cluster,
    ):
        address = cluster.scheduler_address
        ours_t, raw_t = [], []
        run_flow(
            DaskTaskRunner(address=address, client_kwargs={"security": client_sec}), 10
        )  # warm-up
        for _ in range(args.repeats):
            raw_t.append(
                run_flow(
                    DaskTaskRunner(address=address, client_kwargs={"security": client_sec}),
                    args.tasks,
                )
            )
            ours_t.append(
                run_flow(
                    dask_runner(
                        "address",
                        address=address,
                        tls={
                            "ca_file": files["ca"],
                            "cert_file": files["cert"],
                            "key_file": files["key"],
                        },
                    ),
                    args.tasks,
                )
            )
        raw, ours = statistics.median(raw_t), statistics.median(ours_t)
        print(f"{args.tasks} tasks on an existing TLS scheduler (median of {args.repeats}):")
        print(f"  DaskTaskRunner(address)   {raw:6.2f} s")
        print(
            f"  dask_runner('address')    {ours:6.2f} s   ratio {ours / raw:.2f}x (target <= 1.05x)"
        )
    print(f"\nTime to failure for unreachable schedulers (deadline {args.deadline:g} s):")
    for label, (address, tls) in modes.items():
        elapsed = time_ours(address, args.deadline, tls)
        print(f"  {label:16s} dask_runner: {elapsed:5.2f} s (ClusterStartTimeout)")
    started = time.monotonic()
    while len(plain) < len(modes) and time.monotonic() - started < args.cap + 5:
        time.sleep(0.5)
    for label in modes:
        print(f"  {label:16s} plain DaskTaskRunner: {plain.get(label, 'still hanging')}")


if __name__ == "__main__":
    main()
