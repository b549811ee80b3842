"""An emulated Secret Manager: ``google.cloud.secretmanager.v1`` on 127.0.0.1 (plaintext gRPC).

Point ``gcp.endpoints.secret-manager`` at `SecretManagerEmulator.endpoint`. Built on the real
request/response classes of google-cloud-secret-manager (their proto serialisers plug into a
generic gRPC handler), so the real client talks to it unchanged.
It serves AccessSecretVersion, GetSecret, CreateSecret, AddSecretVersion and DeleteSecret,
counts calls, and injects
faults: a status code for the next N calls, or a wrong CRC32C for the next N payloads.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SecretManagerEmulator"]

import google_crc32c
import grpc
from google.cloud.secretmanager_v1.types import resources, service

from oxeo_flows.testing._grpc import LoopbackGrpcFake

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"


@dataclass
class _Fault:
    code: grpc.StatusCode | None
    times: int
    message: str = "injected fault"
    bad_crc: bool = False


@dataclass
class SecretManagerEmulator(LoopbackGrpcFake):
    """In-memory Secret Manager. Use `start()` / `stop()` or as a context manager.

    Attributes:
        secrets: ``(project, name) -> [version payloads]``.
        calls: Number of calls per method.
        accessed: Every version name read, in order.
        delay: Seconds every AccessSecretVersion waits before answering.
    """

    secrets: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    accessed: list[str] = field(default_factory=list)
    delay: float = 0.0
    _faults: dict[str, list[_Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None
    endpoint: str = ""

    # ------------------------------------------------------------------ test controls

    def add(self, project: str, name: str, data: bytes | str) -> int:
        """Add a version of secret ``name``; returns its version number."""
        raw = data.encode() if isinstance(data, str) else data
        with self._lock:
            versions = self.secrets.setdefault((project, name), [])
            versions.append(raw)
            return len(versions)

    def fail(
        self,
        code: grpc.StatusCode,
        *,
        times: int = 1,
        method: str = "AccessSecretVersion",
        message: str = "injected fault",
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with ``code``."""
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(code, times, message))

    def corrupt_crc(self, *, times: int = 1) -> None:
        """Send a wrong ``data_crc32c`` with the next ``times`` payloads."""
        with self._lock:
            self._faults.setdefault("AccessSecretVersion", []).append(
                _Fault(None, times, bad_crc=True)
            )

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method, [])
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    # ------------------------------------------------------------------ handlers

    @staticmethod
    def _split(name: str) -> tuple[str, str, str | None]:
        parts = name.split("/")
        if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "secrets":
            version = parts[5] if len(parts) == 6 and parts[4] == "versions" else None
            return parts[1], parts[3], version
        return "", "", None

    def _access(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls["AccessSecretVersion"] += 1
        self.accessed.append(request.name)
        if self.delay:
            threading.Event().wait(self.delay)
        fault = self._take_fault("AccessSecretVersion")
        if fault is not None and fault.code is not None:
            context.abort(fault.code, fault.message)
        project, name, version = self._split(request.name)
        versions = self.secrets.get((project, name))
        if not versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found.")
            raise AssertionError  # abort() raises
        if version == "latest":
            number = len(versions)
        elif version is not None and version.isdigit() and 1 <= int(version) <= len(versions):
            number = int(version)
        else:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found.")
            raise AssertionError  # abort() raises
        data = versions[number - 1]
        crc = google_crc32c.value(data)
        if fault is not None and fault.bad_crc:
            crc ^= 0xFFFF
        return service.AccessSecretVersionResponse(
            name=f"projects/{project}/secrets/{name}/versions/{number}",
            payload=resources.SecretPayload(data=data, data_crc32c=crc),
        )

    def _get_secret(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls["GetSecret"] += 1
        fault = self._take_fault("GetSecret")
        if fault is not None and fault.code is not None:
            context.abort(fault.code, fault.message)
        project, name, _ = self._split(request.name)
        if (project, name) not in self.secrets:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found.")
        return resources.Secret(name=request.name)

    def _add_version(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls["AddSecretVersion"] += 1
        project, name, _ = self._split(request.parent)
        if (project, name) not in self.secrets:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.parent}] not found.")
        number = self.add(project, name, request.payload.data)
        return resources.SecretVersion(name=f"{request.parent}/versions/{number}")

    def _create_secret(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls["CreateSecret"] += 1
        fault = self._take_fault("CreateSecret")
        if fault is not None and fault.code is not None:
            context.abort(fault.code, fault.message)
        project = request.parent.split("/")[1]
        with self._lock:
            if (project, request.secret_id) in self.secrets:
                context.abort(
                    grpc.StatusCode.ALREADY_EXISTS, f"Secret [{request.secret_id}] exists."
                )
            self.secrets[(project, request.secret_id)] = []
        return resources.Secret(name=f"{request.parent}/secrets/{request.secret_id}")

    def _delete_secret(self, request: Any, context: grpc.ServicerContext) -> Any:
        from google.protobuf import empty_pb2

        self.calls["DeleteSecret"] += 1
        project, name, _ = self._split(request.name)
        with self._lock:
            if self.secrets.pop((project, name), None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found.")
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
                "AccessSecretVersion": unary(
                    self._access,
                    service.AccessSecretVersionRequest,
                    service.AccessSecretVersionResponse,
                ),
                "GetSecret": unary(self._get_secret, service.GetSecretRequest, resources.Secret),
                "AddSecretVersion": unary(
                    self._add_version, service.AddSecretVersionRequest, resources.SecretVersion
                ),
                "CreateSecret": unary(
                    self._create_secret, service.CreateSecretRequest, resources.Secret
                ),
                "DeleteSecret": grpc.unary_unary_rpc_method_handler(
                    self._delete_secret,
                    request_deserializer=service.DeleteSecretRequest.deserialize,
                    response_serializer=lambda message: message.SerializeToString(),
                ),
            },
        )
        return self._serve(handler, max_workers=16)
