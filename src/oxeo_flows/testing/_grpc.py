"""The lifecycle shared by the gRPC emulators: serve a generic handler on 127.0.0.1."""

from __future__ import annotations

from concurrent import futures
from typing import Any, Self

import grpc

__all__ = ["LoopbackGrpcFake"]


class LoopbackGrpcFake:
    """Mixin for a fake that declares ``_server`` and ``endpoint`` and implements ``start()``."""

    _server: Any
    endpoint: str

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns ``"127.0.0.1:PORT"``."""
        raise NotImplementedError

    def _serve(self, handler: grpc.GenericRpcHandler, *, max_workers: int) -> str:
        """Serve ``handler`` on a free port of 127.0.0.1; returns ``"127.0.0.1:PORT"``."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.endpoint = f"127.0.0.1:{port}"
        return self.endpoint

    def stop(self) -> None:
        """Stop serving (waits at most one second for calls in flight)."""
        if self._server is not None:
            self._server.stop(grace=1).wait()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
