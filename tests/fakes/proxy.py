"""One HTTP proxy on 127.0.0.1 for fault injection and call counting in front of a real server.

`LoopbackProxy` forwards every request unchanged (any method) to its upstream; a subclass's
`LoopbackProxy.intercept` may answer a request itself instead (a real HTTP error, as a broken
server would send). Two uses:

- `CountingProxy` in front of the Prefect test server: records ``(method, path)`` so tests count
  the writes an apply makes; ``fail_next_write`` answers one write with HTTP 500;
- `FaultProxy` in front of moto: counts AWS JSON-protocol calls by ``X-Amz-Target`` and answers
  the next N calls with an AWS-style error (``fail("ThrottlingException")``).
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["CountingProxy", "FaultProxy", "LoopbackProxy", "Reply"]

#: An answer of the proxy itself: (status, headers, body).
Reply = tuple[int, dict[str, str], bytes]
_HOP_HEADERS = ("transfer-encoding", "connection", "content-length")
_READ_SUFFIXES = ("/filter", "/count", "/paginate")


class LoopbackProxy:
    """Forward to ``upstream`` (``http://127.0.0.1:PORT[/prefix]``)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def intercept(self, method: str, path: str, headers: dict[str, str]) -> Reply | None:
        """Answer a request here instead of forwarding it (None: forward). Override this."""
        return None

    @property
    def url(self) -> str:
        """The proxy's URL (same path prefix as the upstream)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def forward(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        """Send the request upstream and return its answer."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            kept = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS}
            return resp.status, kept, data
        finally:
            conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _handler(proxy: LoopbackProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length", "0") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            reply = proxy.intercept(self.command, self.path, headers)
            if reply is None:
                reply = proxy.forward(self.command, self.path, body, headers)
            status, out_headers, data = reply
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler


class CountingProxy(LoopbackProxy):
    """In front of a Prefect API URL: record every call, fail chosen writes with HTTP 500."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.calls: list[tuple[str, str]] = []
        self._fail: list[str] = []

    def intercept(self, method: str, path: str, headers: dict[str, str]) -> Reply | None:
        with self._lock:
            self.calls.append((method, path))
            fail = next((f for f in self._fail if f in path and _is_write(method, path)), None)
            if fail is None:
                return None
            self._fail.remove(fail)
        return 500, {"Content-Type": "application/json"}, b'{"detail": "injected failure"}'

    @property
    def writes(self) -> list[tuple[str, str]]:
        """Calls that change server state (reads sent as POST ``/filter`` excluded)."""
        with self._lock:
            return [c for c in self.calls if _is_write(*c)]

    def reset(self) -> None:
        """Forget the calls recorded so far."""
        with self._lock:
            self.calls.clear()

    def fail_next_write(self, fragment: str) -> None:
        """Answer the next write whose path contains ``fragment`` with HTTP 500."""
        with self._lock:
            self._fail.append(fragment)


def _is_write(method: str, path: str) -> bool:
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    return not path.split("?")[0].rstrip("/").endswith(_READ_SUFFIXES)


class FaultProxy(LoopbackProxy):
    """In front of moto: count AWS JSON calls by target; answer the next N with an AWS error."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.calls: dict[str, int] = {}
        self._faults: list[tuple[str, int, int]] = []  # (code, status, times)

    def intercept(self, method: str, path: str, headers: dict[str, str]) -> Reply | None:
        amz = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "")
        target = amz.split(".")[-1]
        with self._lock:
            self.calls[target] = self.calls.get(target, 0) + 1
            if not self._faults:
                return None
            code, status, times = self._faults[0]
            if times <= 1:
                self._faults.pop(0)
            else:
                self._faults[0] = (code, status, times - 1)
        payload = json.dumps({"__type": code, "message": "injected"}).encode()
        return (
            status,
            {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code},
            payload,
        )

    def fail(self, code: str, *, status: int = 400, times: int = 1) -> None:
        """Answer the next ``times`` calls with the AWS error ``code``."""
        with self._lock:
            self._faults.append((code, status, times))
