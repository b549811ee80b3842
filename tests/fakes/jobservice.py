"""A fake of ``google.cloud.aiplatform.v1.JobService`` on 127.0.0.1 (plaintext gRPC).

Built on the real request/response classes of google-cloud-aiplatform (their proto-plus
serialisers plug into a generic gRPC handler), so prefect-gcp's real ``JobServiceAsyncClient``
talks to it unchanged. It serves CreateCustomJob, GetCustomJob and CancelCustomJob, records
every created job, and moves each job through a script of states, one state per GetCustomJob:
by default PENDING (on create) → RUNNING → SUCCEEDED; `fail_next` makes the next job end
FAILED with an error message.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud.aiplatform_v1.types import custom_job, job_service, job_state
from google.protobuf import empty_pb2
from google.rpc import status_pb2

from tests.fakes._grpc import LoopbackGrpcFake

SERVICE = "google.cloud.aiplatform.v1.JobService"
State = job_state.JobState


@dataclass
class _Job:
    job: Any  # custom_job.CustomJob
    script: list[Any]
    error: str | None
    served: list[Any] = field(default_factory=list)


@dataclass
class FakeJobService(LoopbackGrpcFake):
    """In-memory Vertex AI JobService. Use `start()` / `stop()` or as a context manager.

    Attributes:
        created: Every ``CreateCustomJobRequest`` received, in order.
        calls: Number of calls per method name.
    """

    created: list[Any] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    endpoint: str = ""
    _jobs: dict[str, _Job] = field(default_factory=dict)
    _next_error: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1000))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None

    # ------------------------------------------------------------------ test controls

    def fail_next(self, message: str) -> None:
        """Make the next created job go PENDING → RUNNING → FAILED with ``message``."""
        with self._lock:
            self._next_error.append(message)

    def states(self, name: str) -> list[str]:
        """State names served for job ``name`` so far (create included)."""
        with self._lock:
            return [State(s).name for s in self._jobs[name].served]

    @property
    def job_names(self) -> list[str]:
        """Full resource names of the created jobs, in order."""
        with self._lock:
            return list(self._jobs)

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
            job.state = State.JOB_STATE_PENDING
            final = State.JOB_STATE_FAILED if error else State.JOB_STATE_SUCCEEDED
            entry = _Job(job=job, script=[State.JOB_STATE_RUNNING, final], error=error)
            entry.served.append(job.state)
            self._jobs[name] = entry
            return custom_job.CustomJob(job)

    def _get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._count("GetCustomJob")
        with self._lock:
            entry = self._jobs.get(request.name)
            if entry is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CustomJob {request.name} not found")
            if entry.script:
                entry.job.state = entry.script.pop(0)
                if entry.job.state == State.JOB_STATE_FAILED and entry.error:
                    entry.job.error = status_pb2.Status(code=13, message=entry.error)
            entry.served.append(entry.job.state)
            return custom_job.CustomJob(entry.job)

    def _cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._count("CancelCustomJob")
        with self._lock:
            entry = self._jobs.get(request.name)
            if entry is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CustomJob {request.name} not found")
            entry.script = [State.JOB_STATE_CANCELLED]
        return empty_pb2.Empty()

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
        return self._serve(handler, max_workers=8)


def async_client(endpoint: str) -> Any:
    """A real ``JobServiceAsyncClient`` on a plaintext channel to ``endpoint`` (call in a loop)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1.services.job_service import JobServiceAsyncClient
    from google.cloud.aiplatform_v1.services.job_service.transports import (
        JobServiceGrpcAsyncIOTransport,
    )

    transport = JobServiceGrpcAsyncIOTransport(
        host=endpoint,
        credentials=AnonymousCredentials(),
        channel=grpc.aio.insecure_channel(endpoint),
    )
    return JobServiceAsyncClient(transport=transport)
