"""Fan-out at scale: N tile tasks on the thread pool, local Dask, an existing TLS cluster, chunks.

Usage::

    python benchmarks/fanout.py                       # quick: 100 and 1,000 tasks, 2 repeats
    python benchmarks/fanout.py --tasks 2000 10000 --repeats 3 --workloads tiny sleep
    python benchmarks/fanout.py --server drain        # one server, drained before each run

Every measurement is one flow run mapping a task over ``range(N)`` (``tiny``: ``x + 1``;
``sleep``: 50 ms of ``time.sleep`` then ``x + 1``) and summing the results, with:

- ``threads``: Prefect's ``ThreadPoolTaskRunner()``;
- ``local``: ``dask_runner()`` (an in-process ``LocalCluster``, started per flow run);
- ``address``: ``dask_runner("address", ...)`` on an existing TLS ``LocalCluster`` that runs in
  a separate process (one worker, as many threads as ``local``), like a remote scheduler;
- ``chunks``: ``map_in_chunks`` (``--chunk-size`` tiles per task run) on ``dask_runner()``.

The Prefect server is our own uvicorn subprocess running Prefect's app behind a counting ASGI
middleware: it counts HTTP requests and WebSocket messages (task-run state events arrive as
WebSocket messages on ``/api/events/in``) from the flow's process and the Dask workers, and
nothing of our own polling. By default every measurement gets a **fresh server** (a new process
and SQLite file; the start is not timed). With ``--server drain`` one server serves all runs
and, before each run, the script **waits until the server is drained**: every task run of the
previous flow run recorded in a terminal state, and the server process under 5 % of a core for
1 s. (Draining is slow: the SQLite server records ~20-60 task runs/s here, so 2,000 tasks leave
it 30-100 s of backlog.) The machine is shared: runners are interleaved (threads, local,
address, chunks, threads, ...) and the script reports medians, ratios of medians, and the load
average before and after.

Peak RSS is sampled every 50 ms: the flow's process (``local`` workers are threads in it) and the
``address`` cluster's process; "growth" is the flow process's peak minus its RSS at flow start.
"Server CPU / task" is the server process's CPU time from flow start until the counts are read
(``--server fresh``: while the flow ran) or until it is drained (``--server drain``: all of it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")

_UNCOUNTED = "x-bench-uncounted"
TARGETS = {
    "local/threads": 1.2,
    "address/local": 1.2,
    "rss_mb_per_1000": 50.0,
}

# --------------------------------------------------------------------------------------------
# The server side: Prefect's app behind a counting middleware (runs in the server subprocess).
# --------------------------------------------------------------------------------------------


class _Counting:
    """ASGI middleware: counts HTTP requests and inbound WebSocket messages per path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.http: Counter[str] = Counter()
        self.ws: Counter[str] = Counter()

    async def _reply(self, send: Any, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == "/__bench/counts":
                await self._reply(send, {"http": dict(self.http), "ws": dict(self.ws)})
                return
            if path == "/__bench/reset":
                self.http.clear()
                self.ws.clear()
                await self._reply(send, {})
                return
            if not any(name == _UNCOUNTED.encode() for name, _ in scope.get("headers", ())):
                self.http[f"{scope['method']} {_route(path)}"] += 1
        elif kind == "websocket":
            path = scope["path"]
            inner = receive

            async def receive() -> Any:  # counts what the client sends
                message = await inner()
                if message["type"] == "websocket.receive":
                    self.ws[path] += 1
                return message

        await self.app(scope, receive, send)


def _route(path: str) -> str:
    """``/api/task_runs/<uuid>/set_state`` -> ``/api/task_runs/{id}/set_state``."""
    parts = ["{id}" if len(p) == 36 and p.count("-") == 4 else p for p in path.split("/")]
    return "/".join(parts)


def counting_app() -> Any:
    """The uvicorn factory: Prefect's server app, counted."""
    from prefect.server.api.server import create_app

    return _Counting(create_app())


@dataclass
class Server:
    """A Prefect server subprocess (SQLite in a temp dir) behind the counting middleware."""

    process: subprocess.Popen[bytes]
    url: str
    directory: str

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def get(self, path: str) -> Any:
        import httpx

        return httpx.get(f"{self.url}{path}", timeout=30).json()

    def counts(self) -> dict[str, Counter[str]]:
        raw = self.get("/__bench/counts")
        return {"http": Counter(raw["http"]), "ws": Counter(raw["ws"])}

    def reset(self) -> None:
        self.get("/__bench/reset")

    def terminal_task_runs(self, flow_run_id: Any) -> int:
        import httpx

        body = {
            "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
            "task_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}},
        }
        response = httpx.post(
            f"{self.api_url}/task_runs/count", json=body, headers={_UNCOUNTED: "1"}, timeout=30
        )
        return int(response.json())

    def wait_drained(self, flow_run_id: Any = None, expected: int = 0, limit: float = 600) -> float:
        """Wait until the flow run's task runs are all recorded and the server is idle."""
        import psutil

        started = time.monotonic()
        proc = psutil.Process(self.process.pid)
        while flow_run_id is not None and time.monotonic() - started < limit:
            if self.terminal_task_runs(flow_run_id) >= expected:
                break
            time.sleep(0.25)
        proc.cpu_percent(None)
        quiet = 0
        while time.monotonic() - started < limit and quiet < 4:
            time.sleep(0.25)
            quiet = quiet + 1 if proc.cpu_percent(None) < 5.0 else 0
        return time.monotonic() - started


@contextlib.contextmanager
def prefect_server() -> Iterator[Server]:
    """Start our counted Prefect server and point this process's settings at it."""
    import httpx
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        get_current_settings,
        temporary_settings,
    )

    directory = tempfile.mkdtemp(prefix="fanout-server-")
    db = f"sqlite+aiosqlite:///{directory}/prefect.db"
    with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: db}):
        port = _free_port()
        env = {
            **os.environ,
            **get_current_settings().to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": db,
        }
        env.pop("PREFECT_API_URL", None)
        log = open(f"{directory}/server.log", "wb")  # noqa: SIM115 - closed in finally
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(Path(__file__).parent),
                "--factory",
                "fanout:counting_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            # Killing a server with a backlog (--server fresh) prints the recorder's cancelled
            # writes: keep its output in a file, shown if it does not start.
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(process=process, url=f"http://127.0.0.1:{port}", directory=directory)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{server.api_url}/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    output = Path(f"{directory}/server.log").read_text(errors="replace")
                    msg = f"the Prefect server did not start:\n{output[-4000:]}"
                    raise RuntimeError(msg)
                time.sleep(0.2)
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
            shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The existing TLS cluster, in its own process (``--serve-cluster DIR``).
# --------------------------------------------------------------------------------------------


def serve_cluster(directory: str, threads: int) -> None:
    """Run a TLS LocalCluster (in-process worker threads) until stdin closes."""
    import logging

    from distributed import LocalCluster
    from distributed.security import Security

    d = Path(directory)
    security = Security(
        tls_ca_file=str(d / "ca.pem"),
        tls_scheduler_cert=str(d / "scheduler-cert.pem"),
        tls_scheduler_key=str(d / "scheduler-key.pem"),
        tls_worker_cert=str(d / "worker-cert.pem"),
        tls_worker_key=str(d / "worker-key.pem"),
        tls_client_cert=str(d / "cert.pem"),
        tls_client_key=str(d / "key.pem"),
        require_encryption=True,
    )
    with LocalCluster(
        n_workers=1,
        threads_per_worker=threads,
        processes=False,
        protocol="tls",
        host="127.0.0.1",
        security=security,
        dashboard_address="127.0.0.1:0",
        memory_limit=0,
        silence_logs=logging.ERROR,
    ) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def tls_cluster(threads: int) -> Iterator[tuple[str, dict[str, str], int]]:
    """Yield (address, client TLS files, pid) of a TLS cluster in a subprocess."""
    from distributed.security import Security

    directory = tempfile.mkdtemp(prefix="fanout-tls-")
    sec = Security.temporary()
    pems = {
        "ca": sec.tls_ca_file,
        "cert": sec.tls_client_cert,
        "key": sec.tls_client_key,
        "scheduler-cert": sec.tls_scheduler_cert,
        "scheduler-key": sec.tls_scheduler_key,
        "worker-cert": sec.tls_worker_cert,
        "worker-key": sec.tls_worker_key,
    }
    for name, pem in pems.items():
        path = Path(directory) / f"{name}.pem"
        path.write_text(pem)
        path.chmod(0o600)
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-cluster", directory, "--cluster-threads", str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().decode().strip()
        if not address.startswith("tls://"):
            msg = f"the TLS cluster did not start: {address!r}"
            raise RuntimeError(msg)
        files = {k: str(Path(directory) / f"{k}.pem") for k in ("ca", "cert", "key")}
        yield address, files, process.pid
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The flows.
# --------------------------------------------------------------------------------------------

from prefect import flow, task  # noqa: E402 - after the settings above


@task
def tiny(x: int) -> int:
    return x + 1


@task
def sleepy(x: int) -> int:
    time.sleep(0.05)
    return x + 1


WORKLOADS = {"tiny": tiny, "sleep": sleepy}


class RssSampler:
    """Peak RSS of some processes (not their children: the server is one), every 50 ms."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start = {name: self._rss(p) for name, p in self.procs.items()}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(proc: Any) -> int:
        try:
            return int(proc.memory_info().rss)
        except Exception:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, proc in self.procs.items():
                self.peak[name] = max(self.peak[name], self._rss(proc))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *args: Any) -> None:
        self._stop.set()
        self._thread.join()
        for name, proc in self.procs.items():
            self.peak[name] = max(self.peak[name], self._rss(proc))


@dataclass
class Sample:
    wall: float
    drain: float
    http: int
    ws: int
    rss_flow_peak: float
    rss_flow_growth: float
    rss_workers_peak: float | None
    task_runs: int
    server_cpu: float = 0.0
    http_paths: Counter[str] = field(default_factory=Counter)


def make_flow(runner: Any, workload: str, mode: str, chunk_size: int) -> Any:
    fn = WORKLOADS[workload]
    if mode == "chunks":
        from oxeo_flows.fanout import map_in_chunks

        @flow(task_runner=runner, name=f"fanout-{workload}-chunks")
        def chunked(n: int) -> int:
            result = map_in_chunks(fn, range(n), chunk_size=chunk_size)
            result.raise_for_errors()
            return sum(result.values)

        return chunked

    @flow(task_runner=runner, name=f"fanout-{workload}")
    def per_task(n: int) -> int:
        return sum(fn.map(range(n)).result())

    return per_task


def flush_client() -> None:
    """Send what this process still buffers (events, logs) to the server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(RuntimeError):
        APILogWorker.drain_all(timeout=60)
    EventsWorker.drain_all(timeout=60)


def drain_worker_events() -> None:
    """On a Dask worker: send its buffered events, and forget the server (it changes per run).

    Prefect keeps one events worker per process, bound to the API URL it first saw; a worker
    process outlives the flow run (and, with ``--server fresh``, the server).
    """
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=60)


def run_once(
    server: Server,
    make_runner: Callable[[], Any],
    *,
    mode: str,
    workload: str,
    n: int,
    chunk_size: int,
    worker_pid: int | None,
    drain_after: bool,
    flush_workers: Callable[[], Any] | None = None,
) -> Sample:
    import gc

    import psutil

    gc.collect()
    the_flow = make_flow(make_runner(), workload, mode, chunk_size)
    server.reset()
    server_proc = psutil.Process(server.process.pid)
    cpu_before = sum(server_proc.cpu_times()[:2])
    pids = {"flow": os.getpid()}
    if worker_pid is not None:
        pids["workers"] = worker_pid
    with RssSampler(pids) as rss:
        started = time.perf_counter()
        state = the_flow(n, return_state=True)
        wall = time.perf_counter() - started
    if not state.is_completed():
        msg = f"flow run failed: {state.message}"
        raise RuntimeError(msg)
    assert state.result() == n * (n + 1) // 2
    flush_client()
    if flush_workers is not None:
        flush_workers()
    counts = server.counts()
    expected = n if mode != "chunks" else -(-n // chunk_size)
    drain = server.wait_drained(state.state_details.flow_run_id, expected) if drain_after else 0.0
    # With --server drain: all the server's work for this run; with fresh: what it did meanwhile.
    server_cpu = sum(server_proc.cpu_times()[:2]) - cpu_before
    mb = 1024 * 1024
    return Sample(
        wall=wall,
        drain=drain,
        http=sum(counts["http"].values()),
        ws=sum(counts["ws"].values()),
        rss_flow_peak=rss.peak["flow"] / mb,
        rss_flow_growth=(rss.peak["flow"] - rss.start["flow"]) / mb,
        rss_workers_peak=rss.peak["workers"] / mb if "workers" in rss.peak else None,
        task_runs=expected,
        server_cpu=server_cpu,
        http_paths=counts["http"],
    )


# Where a py-spy sample goes: the first rule that one of its frames matches.
PROFILE_BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("(imports)", ("importlib._bootstrap",)),
    ("(benchmark harness)", ("wait_drained", "RssSampler", "flush_client", "prefect_server")),
    ("client: submit, Dask graph", ("Client.submit", "Client.map", "Client.scatter")),
    ("client: submit, Prefect", ("FastSubmitDaskTaskRunner", "ThreadPoolTaskRunner.submit")),
    ("client: map, resolve results", ("TaskRunner.map", "FutureList.result", "Future.result")),
    ("task engine: call the function", ("call_task_fn",)),
    ("task engine: states and events", ("begin_run", "set_state", "_create_task_run_locally")),
    ("task engine: contexts", ("hydrated_context", "setup_run_context", "transaction_context")),
    ("task engine: other", ("prefect/task_engine.py", "run_task_on_worker")),
    ("Prefect events client (websocket)", ("EventsWorker", "events/clients.py")),
    ("Prefect background threads, other", ("EventLoopThread._entrypoint",)),
    ("Dask scheduler", ("distributed/scheduler.py",)),
    ("Dask worker profiler", ("distributed/profile.py",)),
    ("Dask worker (state machine, metrics)", ("distributed/worker", "threadpoolexecutor")),
    ("Dask client", ("distributed/client.py",)),
    ("Dask comms, serialisation, event loop", ("distributed/", "tornado", "asyncio")),
]


def summarize_profiles(paths: list[str], tasks: int, rate: int) -> None:
    """Print py-spy ``--format raw`` samples per bucket, in ms of GIL time per task."""
    columns = []
    for path in paths:
        counts: Counter[str] = Counter()
        for line in Path(path).read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            bucket = next(
                (name for name, subs in PROFILE_BUCKETS if any(x in stack for x in subs)),
                "(no Python frame / other)",
            )
            counts[bucket] += int(n)
        columns.append(counts)
    names = [name for name, _ in PROFILE_BUCKETS] + ["(no Python frame / other)"]
    print("| where | " + " | ".join(Path(p).name for p in paths) + " |")
    print("|---" * (len(paths) + 1) + "|")
    for name in names:
        if any(c[name] for c in columns):
            cells = " | ".join(f"{1000 * c[name] / rate / tasks:.2f}" for c in columns)
            print(f"| {name} | {cells} |")
    totals = []
    for c in columns:
        timed = sum(c.values()) - c["(imports)"] - c["(benchmark harness)"]
        totals.append(f"**{1000 * timed / rate / tasks:.2f}**")
    print("| total, without imports and harness | " + " | ".join(totals) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=["tiny"])
    parser.add_argument(
        "--runners",
        nargs="+",
        choices=["threads", "local", "address", "chunks"],
        default=["threads", "local", "address", "chunks"],
    )
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument(
        "--server",
        choices=["fresh", "drain"],
        default="fresh",
        help="a fresh Prefect server per measurement (default), or one drained before each run",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up runs")
    parser.add_argument("--show-paths", action="store_true", help="print HTTP requests by route")
    parser.add_argument(
        "--summarize",
        nargs="+",
        metavar="RAW",
        help="summarise py-spy raw profiles (see docs/benchmarks.md) of --tasks[0] tasks",
    )
    parser.add_argument("--rate", type=int, default=50, help="py-spy sampling rate (Hz)")
    parser.add_argument("--serve-cluster", help=argparse.SUPPRESS)
    parser.add_argument("--cluster-threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_cluster:
        serve_cluster(args.serve_cluster, args.cluster_threads)
        return
    if args.summarize:
        summarize_profiles(args.summarize, args.tasks[0], args.rate)
        return

    import logging

    from prefect.task_runners import ThreadPoolTaskRunner

    from oxeo_flows import dask_runner

    # LocalCluster restores distributed's INFO level when it closes; keep the output readable.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    load_before = os.getloadavg()
    print(
        f"cores: {os.cpu_count()}  load average before: "
        + " ".join(f"{x:.2f}" for x in load_before),
        flush=True,
    )
    local_threads = dask_runner().cluster_kwargs.get("threads_per_worker") or min(
        32, 4 * (os.cpu_count() or 1)
    )
    with contextlib.ExitStack() as stack:
        address, files, cluster_pid = stack.enter_context(tls_cluster(local_threads))
        tls = {"ca_file": files["ca"], "cert_file": files["cert"], "key_file": files["key"]}
        from distributed import Client
        from distributed.security import Security

        harness = Client(
            address,
            security=Security(
                tls_ca_file=files["ca"],
                tls_client_cert=files["cert"],
                tls_client_key=files["key"],
                require_encryption=True,
            ),
        )
        stack.callback(harness.close)

        def flush_workers() -> None:
            harness.run(drain_worker_events)

        runners: dict[str, tuple[str, Callable[[], Any]]] = {
            "threads": ("tasks", ThreadPoolTaskRunner),
            "local": ("tasks", dask_runner),
            "address": ("tasks", lambda: dask_runner("address", address=address, tls=tls)),
            "chunks": ("chunks", dask_runner),
        }
        runners = {k: v for k, v in runners.items() if k in args.runners}
        server_holder: dict[str, Any] = {}

        def server(fresh: bool = args.server == "fresh") -> Server:
            if fresh or "server" not in server_holder:
                if "stack" in server_holder:
                    server_holder.pop("stack").close()
                inner = contextlib.ExitStack()
                server_holder["server"] = inner.enter_context(prefect_server())
                server_holder["stack"] = inner
            return server_holder["server"]  # type: ignore[no-any-return]

        stack.callback(lambda: server_holder.get("stack") and server_holder["stack"].close())
        # Warm-up (excluded): one-time imports and the first cluster start of a process.
        for i, (label, (mode, make)) in enumerate(runners.items() if not args.no_warmup else ()):
            srv = server(fresh=i == 0)
            s = run_once(
                srv,
                make,
                mode=mode,
                workload="tiny",
                n=20,
                chunk_size=args.chunk_size,
                worker_pid=cluster_pid if label == "address" else None,
                drain_after=True,
                flush_workers=flush_workers if label == "address" else None,
            )
            print(f"warm-up {label:8s} {s.wall:6.2f} s", flush=True)
        results: dict[tuple[str, int, str], list[Sample]] = {}
        for workload in args.workloads:
            for n in args.tasks:
                for repeat in range(args.repeats):
                    for label, (mode, make) in runners.items():
                        srv = server()
                        s = run_once(
                            srv,
                            make,
                            mode=mode,
                            workload=workload,
                            n=n,
                            chunk_size=args.chunk_size,
                            worker_pid=cluster_pid if label == "address" else None,
                            drain_after=args.server == "drain",
                            flush_workers=flush_workers if label == "address" else None,
                        )
                        results.setdefault((workload, n, label), []).append(s)
                        print(
                            f"  {workload:5s} {n:6d} {label:8s} run {repeat + 1}: {s.wall:7.2f} s"
                            f"  http/task {s.http / n:5.2f}  ws/task {s.ws / n:5.2f}"
                            f"  rss +{s.rss_flow_growth:6.1f} MB"
                            + (f"  drain {s.drain:5.1f} s" if args.server == "drain" else ""),
                            flush=True,
                        )
                        if args.show_paths:
                            for path, count in s.http_paths.most_common(8):
                                print(f"      {count:6d} {path}")
    report(results, args, load_before)


def report(
    results: dict[tuple[str, int, str], list[Sample]],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
) -> None:
    def med(samples: list[Sample], attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in samples)

    print(
        "\n| workload | tasks | runner | wall (median) | tasks/s | HTTP req/task | WS msgs/task "
        "| flow RSS peak | flow RSS growth / 1k tasks | workers RSS peak | server drain "
        "| server CPU / task |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (workload, n, label), samples in results.items():
        wall = med(samples, "wall")
        workers = [s.rss_workers_peak for s in samples if s.rss_workers_peak is not None]
        growth = med(samples, "rss_flow_growth") / (n / 1000)
        drain = f"{med(samples, 'drain'):.1f} s" if args.server == "drain" else "-"
        print(
            f"| {workload} | {n:,} | {label} | {wall:.2f} s | {n / wall:.0f} "
            f"| {med(samples, 'http') / n:.2f} | {med(samples, 'ws') / n:.2f} "
            f"| {med(samples, 'rss_flow_peak'):.0f} MB | {growth:.1f} MB "
            f"| {f'{max(workers):.0f} MB' if workers else '(in flow process)'} "
            f"| {drain} | {1000 * med(samples, 'server_cpu') / n:.1f} ms |"
        )
    print("\nRatios of medians (target in brackets):")
    for workload in args.workloads:
        for n in args.tasks:

            def wall(label: str, n: int = n, workload: str = workload) -> float | None:
                samples = results.get((workload, n, label))
                return med(samples, "wall") if samples else None

            threads, local, address, chunks = (
                wall(x) for x in ("threads", "local", "address", "chunks")
            )
            line = [f"  {workload:5s} {n:6d}:"]
            if threads and local:
                ok = "ok" if local / threads <= TARGETS["local/threads"] else "MISSED"
                line.append(f"local/threads {local / threads:.2f}x [<= 1.2, {ok}]")
            if local and address:
                ok = "ok" if address / local <= TARGETS["address/local"] else "MISSED"
                line.append(f"address/local {address / local:.2f}x [<= 1.2, {ok}]")
            if threads and chunks:
                line.append(f"chunks/threads {chunks / threads:.2f}x")
            print("  ".join(line))
            for label in ("threads", "local", "address", "chunks"):
                samples = results.get((workload, n, label))
                if samples:
                    growth = med(samples, "rss_flow_growth") / (n / 1000)
                    ok = "ok" if growth <= TARGETS["rss_mb_per_1000"] else "MISSED"
                    print(
                        f"      {label:8s} flow RSS growth {growth:6.1f} MB per 1,000 tasks "
                        f"[<= 50, {ok}]"
                    )
    load_after = os.getloadavg()
    server = "a fresh one per run" if args.server == "fresh" else "one, drained before each run"
    print(
        "\nload average before: "
        + " ".join(f"{x:.2f}" for x in load_before)
        + "  after: "
        + " ".join(f"{x:.2f}" for x in load_after)
        + f"  (cores: {os.cpu_count()}; Prefect server: {server})"
    )


if __name__ == "__main__":
    main()
