"""A tiny HTTP proxy on 127.0.0.1 that injects AWS-style errors in front of moto."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class FaultProxy:
    """Forward to ``upstream``; answer the next N ``target`` calls with an AWS error."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.calls: dict[str, int] = {}
        self._faults: list[tuple[str, int, int]] = []  # (code, status, times)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = self.headers.get("X-Amz-Target", "").split(".")[-1]
                with proxy._lock:
                    proxy.calls[target] = proxy.calls.get(target, 0) + 1
                    fault = None
                    if proxy._faults:
                        code, status, times = proxy._faults[0]
                        fault = (code, status)
                        if times <= 1:
                            proxy._faults.pop(0)
                        else:
                            proxy._faults[0] = (code, status, times - 1)
                if fault is not None:
                    payload = json.dumps({"__type": fault[0], "message": "injected"}).encode()
                    self.send_response(fault[1])
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("x-amzn-ErrorType", fault[0])
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, code: str, *, status: int = 400, times: int = 1) -> None:
        with self._lock:
            self._faults.append((code, status, times))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
