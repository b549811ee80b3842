"""An emulated Vertex AI ``JobService`` on 127.0.0.1 (plaintext gRPC) that runs the jobs.

Built on the real request/response classes of google-cloud-aiplatform (their proto-plus
serialisers plug into a generic gRPC handler), so prefect-gcp's real ``JobServiceAsyncClient``
talks to it unchanged. It serves CreateCustomJob, GetCustomJob and CancelCustomJob and
records every created job; on the same port (as on Google's regional endpoint) the
PersistentResourceService answers GetPersistentResource for the resources added with
`VertexEmulator.add_persistent_resource`.

Executing (the default): each CustomJob is PENDING for ``start_delay`` seconds, then every
replica of every worker pool spec runs its container's ``command`` + ``args`` with its
``env`` as a subprocess (process group) in this virtualenv, each with its own loopback
address (``127.30.0.N``, port 2222) and a ``CLUSTER_SPEC`` variable like Vertex's. The job is
RUNNING while replica ``workerpool0-0`` runs, then SUCCEEDED (exit code 0) or FAILED (the
error message ends with the tail of its output); the other replicas are stopped then.
CancelCustomJob kills the replicas (CANCELLED). `fail_next` makes the next job FAILED
before its container starts (as an image pull or quota error does). The image is mapped to
a working directory (``image_dirs``, default ``workdir``): that is where the container's
command runs (the "image contents").

Scripted (``execute=False``): nothing runs; each GetCustomJob serves the next state of a
script, PENDING → RUNNING → SUCCEEDED (or FAILED after `fail_next`).

`emulated_vertex_worker` gives prefect-gcp's real ``VertexAIWorker`` with its JobService client
pointed at the emulator (the worker hard-codes Google's endpoint; nothing else changes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import grpc
from google.cloud.aiplatform_v1.types import (
    custom_job,
    job_service,
    job_state,
    machine_resources,
    persistent_resource,
    persistent_resource_service,
)
from google.protobuf import empty_pb2
from google.rpc import status_pb2

from oxeo_flows.testing._boot import Container
from oxeo_flows.testing._grpc import LoopbackGrpcFake

__all__ = [
    "PERSISTENT_RESOURCE_SERVICE",
    "SERVICE",
    "VertexEmulator",
    "async_client",
    "emulated_vertex_worker",
]

SERVICE = "google.cloud.aiplatform.v1.JobService"
PERSISTENT_RESOURCE_SERVICE = "google.cloud.aiplatform.v1.PersistentResourceService"
State = job_state.JobState
_FINAL = frozenset({State.JOB_STATE_SUCCEEDED, State.JOB_STATE_FAILED, State.JOB_STATE_CANCELLED})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Job:
    job: Any  # custom_job.CustomJob
    script: list[Any]
    error: str | None
    served: list[Any] = field(default_factory=list)
    replicas: list[Container] = field(default_factory=list)
    console: Path | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class VertexEmulator(LoopbackGrpcFake):
    """Vertex AI JobService. Use `start()` / `stop()` or as a context manager.

    Attributes:
        execute: Run each job's containers (True) or serve a script of states (False).
        start_delay: Seconds a job stays PENDING before its containers start.
        workdir: Working directory of every container (default: the emulator's temp dir).
        image_dirs: Working directory per container image URI (overrides ``workdir``).
        created: Every ``CreateCustomJobRequest`` received, in order.
        calls: Number of calls per method name.
    """

    execute: bool = True
    start_delay: float = 0.0
    workdir: Path | None = None
    image_dirs: dict[str, Path] = field(default_factory=dict)
    created: list[Any] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    endpoint: str = ""
    _jobs: dict[str, _Job] = field(default_factory=dict)
    _resources: dict[str, Any] = field(default_factory=dict)
    _next_error: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1000))
    _hosts: Any = field(default_factory=lambda: itertools.count(2))
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="oxeo-vertex-")))
    _server: Any = None

    # ------------------------------------------------------------------ test controls

    def fail_next(self, message: str) -> None:
        """Make the next created job FAILED with ``message`` before its container starts."""
        with self._lock:
            self._next_error.append(message)

    def add_persistent_resource(
        self, name: str, *, state: str = "RUNNING", machine_type: str = "n1-standard-4"
    ) -> Any:
        """Add (or replace) a persistent resource served by GetPersistentResource.

        Args:
            name: Full resource name,
                ``projects/{project}/locations/{region}/persistentResources/{id}``.
            state: A ``PersistentResource.State`` name: ``RUNNING``, ``PROVISIONING``,
                ``STOPPING``, ``ERROR``, ...
            machine_type: Machine type of its one resource pool.

        Returns:
            The ``PersistentResource`` message now served.
        """
        resource = persistent_resource.PersistentResource(
            name=name,
            display_name=name.rsplit("/", 1)[-1],
            state=getattr(persistent_resource.PersistentResource.State, state),
            resource_pools=[
                persistent_resource.ResourcePool(
                    id="pool-0",
                    machine_spec=machine_resources.MachineSpec(machine_type=machine_type),
                    replica_count=1,
                )
            ],
            create_time=_now(),
        )
        if state == "ERROR":
            resource.error = status_pb2.Status(code=8, message="quota exceeded")
        with self._lock:
            self._resources[name] = resource
        return persistent_resource.PersistentResource(resource)

    def states(self, name: str) -> list[str]:
        """State names the job went through (scripted: served) so far, create included."""
        with self._lock:
            return [State(s).name for s in self._jobs[name].served]

    def state(self, name: str) -> str:
        """The job's current state name."""
        with self._lock:
            return str(State(self._jobs[name].job.state).name)

    def output(self, name: str) -> str:
        """What the job's replicas wrote to stdout/stderr."""
        console = self._jobs[name].console
        if console is None or not console.exists():
            return ""
        return console.read_text(encoding="utf-8", errors="replace")

    @property
    def job_names(self) -> list[str]:
        """Full resource names of the created jobs, in order."""
        with self._lock:
            return list(self._jobs)

    def processes(self) -> list[int]:
        """Process ids of the replicas still running."""
        with self._lock:
            return [c.pid for j in self._jobs.values() for c in j.replicas if c.alive()]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until every job has reached a final state."""
        end = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))

    def stop(self) -> None:
        """Kill every replica still running, then stop serving."""
        with self._lock:
            jobs = list(self._jobs.values())
        for entry in jobs:
            entry.cancelled.set()
            for replica in entry.replicas:
                replica.stop(grace=2)
        self.wait_idle(10)
        super().stop()

    # ------------------------------------------------------------------ execution

    def _set(self, entry: _Job, state: Any, error: str | None = None) -> None:
        with self._lock:
            if entry.job.state in _FINAL:
                return
            entry.job.state = state
            if error is not None:
                entry.job.error = status_pb2.Status(code=13, message=error)
            if state in _FINAL:
                entry.job.end_time = _now()
            if self.execute:
                entry.served.append(state)

    def _run(self, entry: _Job) -> None:
        if entry.cancelled.wait(self.start_delay):
            return
        if entry.error is not None:
            self._set(entry, State.JOB_STATE_FAILED, entry.error)
            return
        spec = entry.job.job_spec
        hosts: dict[str, list[str]] = {}
        plan: list[tuple[str, int, Any, str]] = []
        for i, pool in enumerate(spec.worker_pool_specs):
            kind = f"workerpool{i}"
            for index in range(max(1, int(pool.replica_count or 1))):
                host = f"127.30.0.{next(self._hosts)}"
                hosts.setdefault(kind, []).append(f"{host}:2222")
                plan.append((kind, index, pool, host))
        entry.console = self._dir / f"{entry.job.name.rsplit('/', 1)[-1]}.log"
        job_info = {"job_name": entry.job.name, "display_name": entry.job.display_name}
        with self._lock:
            if entry.cancelled.is_set():
                return
            for kind, index, pool, host in plan:
                container = pool.container_spec
                env = {e.name: e.value for e in container.env}
                env["CLUSTER_SPEC"] = json.dumps(
                    {
                        "cluster": hosts,
                        "environment": "cloud",
                        "task": {"type": kind, "index": index},
                        "job": json.dumps(job_info),
                    }
                )
                env["OXEO_EMULATED_HOST"] = host
                argv = [*container.command, *container.args]
                cwd = self.image_dirs.get(container.image_uri) or self.workdir or self._dir
                with entry.console.open("a", encoding="utf-8") as out:
                    out.write(
                        f"[emulator] replica {kind}-{index} at {host}, image "
                        f"{container.image_uri} -> {cwd}, env {sorted(env)}\n"
                    )
                entry.replicas.append(Container(argv, env, entry.console, cwd=str(cwd)))
            entry.job.start_time = _now()
        self._set(entry, State.JOB_STATE_RUNNING)
        chief = entry.replicas[0]
        code = chief.process.wait()
        for replica in entry.replicas[1:]:
            replica.stop(grace=2)
        if entry.cancelled.is_set():
            self._set(entry, State.JOB_STATE_CANCELLED)
        elif code == 0:
            self._set(entry, State.JOB_STATE_SUCCEEDED)
        else:
            tail = "\n".join(self.output(entry.job.name).rstrip().splitlines()[-20:])
            self._set(
                entry,
                State.JOB_STATE_FAILED,
                f"The replica workerpool0-0 exited with a non-zero status of {code}. "
                f"Termination reason: Error. Last lines of its output:\n{tail}",
            )

    # ------------------------------------------------------------------ handlers

    def _count(self, method: str) -> None:
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1

    def _create(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._count("CreateCustomJob")
        with self._lock:
            self.created.append(request)
            name = f"{request.parent}/customJobs/{next(self._ids)}"
            error = self._next_error.pop(0) if self._next_error else None
            job = custom_job.CustomJob(request.custom_job)
            job.name = name
            job.state = State.JOB_STATE_PENDING  # type: ignore[assignment]
            job.create_time = _now()
            final: Any = State.JOB_STATE_FAILED if error else State.JOB_STATE_SUCCEEDED
            script: list[Any] = [] if self.execute else [State.JOB_STATE_RUNNING, final]
            entry = _Job(job=job, script=script, error=error)
            entry.served.append(job.state)
            self._jobs[name] = entry
            reply = custom_job.CustomJob(job)
        if self.execute:
            thread = threading.Thread(target=self._run, args=(entry,), daemon=True, name=name)
            self._threads.append(thread)
            thread.start()
        return reply

    def _get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._count("GetCustomJob")
        with self._lock:
            entry = self._jobs.get(request.name)
            if entry is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CustomJob {request.name} not found")
                raise AssertionError  # abort() raises
            if entry.script:
                entry.job.state = entry.script.pop(0)
                if entry.job.state == State.JOB_STATE_FAILED and entry.error:
                    entry.job.error = status_pb2.Status(code=13, message=entry.error)
            if not self.execute:
                entry.served.append(entry.job.state)
            return custom_job.CustomJob(entry.job)

    def _cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._count("CancelCustomJob")
        with self._lock:
            entry = self._jobs.get(request.name)
            if entry is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CustomJob {request.name} not found")
                raise AssertionError  # abort() raises
            if not self.execute:
                entry.script = [State.JOB_STATE_CANCELLED]
                return empty_pb2.Empty()
            entry.cancelled.set()
            replicas = list(entry.replicas)
            if not replicas:
                self._set(entry, State.JOB_STATE_CANCELLED)
            else:
                self._set(entry, State.JOB_STATE_CANCELLING)
        for replica in replicas:
            replica.stop(grace=5)
        return empty_pb2.Empty()

    def _get_resource(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._count("GetPersistentResource")
        with self._lock:
            resource = self._resources.get(request.name)
            if resource is None:
                context.abort(
                    grpc.StatusCode.NOT_FOUND, f"PersistentResource {request.name} not found"
                )
                raise AssertionError  # abort() raises
            return persistent_resource.PersistentResource(resource)

    # ------------------------------------------------------------------ server

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns ``"127.0.0.1:PORT"``."""

        def unary(fn: Any, req: Any, resp: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.deserialize, response_serializer=resp.serialize
            )

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "CreateCustomJob": unary(
                    self._create, job_service.CreateCustomJobRequest, custom_job.CustomJob
                ),
                "GetCustomJob": unary(
                    self._get, job_service.GetCustomJobRequest, custom_job.CustomJob
                ),
                "CancelCustomJob": grpc.unary_unary_rpc_method_handler(
                    self._cancel,
                    request_deserializer=job_service.CancelCustomJobRequest.deserialize,
                    response_serializer=empty_pb2.Empty.SerializeToString,
                ),
            },
        )
        resources = grpc.method_handlers_generic_handler(
            PERSISTENT_RESOURCE_SERVICE,
            {
                "GetPersistentResource": unary(
                    self._get_resource,
                    persistent_resource_service.GetPersistentResourceRequest,
                    persistent_resource.PersistentResource,
                ),
            },
        )
        return self._serve(_Services(handler, resources), max_workers=8)


class _Services(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Several services on one server (the first handler that knows the method answers)."""

    def __init__(self, *handlers: grpc.GenericRpcHandler) -> None:
        self._handlers = handlers

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        for handler in self._handlers:
            found = handler.service(handler_call_details)
            if found is not None:
                return found
        return None


def async_client(endpoint: str) -> Any:
    """A real ``JobServiceAsyncClient`` on a plaintext channel to ``endpoint`` (call in a loop)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1.services.job_service import JobServiceAsyncClient
    from google.cloud.aiplatform_v1.services.job_service.transports import (  # type: ignore[attr-defined]
        JobServiceGrpcAsyncIOTransport,
    )

    transport = JobServiceGrpcAsyncIOTransport(
        host=endpoint,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        channel=grpc.aio.insecure_channel(endpoint),
    )
    return JobServiceAsyncClient(transport=transport)


_WORKER: dict[str, Any] = {}


def _worker_class() -> Any:
    if "cls" in _WORKER:
        return _WORKER["cls"]
    from prefect.utilities.dispatch import get_registry_for_type
    from prefect.workers.base import BaseWorker
    from prefect_gcp.workers.vertex import VertexAIWorker

    class EmulatedVertexWorker(VertexAIWorker):  # type: ignore[misc]
        """prefect-gcp's worker; its JobService client dials ``endpoint`` in plaintext."""

        endpoint: ClassVar[str] = ""

        async def run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> Any:
            endpoint = type(self).endpoint

            def get_job_service_async_client(client_options: Any = None) -> Any:
                return async_client(endpoint)

            credentials = configuration.credentials.model_copy()
            object.__setattr__(
                credentials, "get_job_service_async_client", get_job_service_async_client
            )
            configuration.credentials = credentials
            return await super().run(flow_run, configuration, task_status)

    registry = get_registry_for_type(BaseWorker)
    # Prefect registers every worker subclass under its type: put the real one back.
    if registry is not None:
        registry["vertex-ai"] = VertexAIWorker
    _WORKER["cls"] = EmulatedVertexWorker
    return EmulatedVertexWorker


@contextlib.contextmanager
def emulated_vertex_worker(endpoint: str) -> Iterator[Any]:
    """prefect-gcp's ``VertexAIWorker`` class, its JobService client pointed at ``endpoint``.

    Example:
        ```python
        with emulated_vertex_worker(vertex.endpoint) as Worker:
            async with Worker(work_pool_name="prod-vertex") as worker:
                await worker.get_and_submit_flow_runs()
        ```
    """
    with warnings.catch_warnings():
        # Prefect warns that the subclass replaces VertexAIWorker in its type registry.
        warnings.filterwarnings("ignore", message="Type 'EmulatedVertexWorker'")
        cls = _worker_class()
    previous = cls.endpoint
    cls.endpoint = endpoint
    try:
        yield cls
    finally:
        cls.endpoint = previous
