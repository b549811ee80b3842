"""A counting HTTP proxy on 127.0.0.1 in front of the real Prefect test server.

It forwards every request unchanged and records ``(method, path)``, so tests can count the
writes an apply makes against the real API; ``fail_next_write`` answers one write matching a
path fragment with HTTP 500 (a real HTTP error, as a broken server would send).
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_READ_SUFFIXES = ("/filter", "/count", "/paginate")


class CountingProxy:
    """Forward to ``upstream`` (a Prefect API URL); record every call."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")  # e.g. /api
        self.calls: list[tuple[str, str]] = []
        self._fail: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path
                with proxy._lock:
                    proxy.calls.append((self.command, path))
                    fail = next(
                        (f for f in proxy._fail if f in path and _is_write(self.command, path)),
                        None,
                    )
                    if fail is not None:
                        proxy._fail.remove(fail)
                if fail is not None:
                    payload = b'{"detail": "injected failure"}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's API URL (same path prefix as the upstream)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

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

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _is_write(method: str, path: str) -> bool:
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    return not path.split("?")[0].rstrip("/").endswith(_READ_SUFFIXES)
