"""Loopback fakes of the two instance metadata servers a Dask VM asks for its credentials.

- `GceMetadata`: ``GET /computeMetadata/v1/instance/service-accounts/default/token`` with
  ``Metadata-Flavor: Google`` (403 without it), as on a GCE VM; point ``GCE_METADATA_HOST``
  at ``fake.host``.
- `Imds`: EC2's IMDSv2: ``PUT /latest/api/token`` then ``GET
  /latest/meta-data/iam/security-credentials/[ROLE]`` with the token (401 without it); point
  ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` at ``fake.endpoint``.

Each records the requests it saw (method, path, headers) in ``requests``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.fail = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                owner.requests.append((method, self.path, dict(self.headers)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = owner.handle(method, self.path, headers)
                raw = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_PUT(self) -> None:
                self._answer("PUT")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"
        self.endpoint = f"http://{self.host}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        """``(status, body)`` for a request (``headers`` with lower-case names)."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class GceMetadata(_Server):
    """The GCE metadata server's token endpoint; ``token`` is what it hands out."""

    token = "ya29.fake-vm-token"

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        if self.fail:
            return 500, "internal error"
        if headers.get("metadata-flavor") != "Google":
            return 403, "Missing Metadata-Flavor:Google header"
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            return 200, json.dumps(
                {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}
            )
        return 404, "not found"


class Imds(_Server):
    """IMDSv2 with one instance role, ``role``, and its temporary credentials."""

    role = "oxeo-dask-vm"
    session = "imds-session-token"
    credentials = {
        "Code": "Success",
        "AccessKeyId": "ASIAFAKEVMROLE",
        "SecretAccessKey": "fake-vm-role-secret",
        "Token": "fake-vm-role-session",
    }

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        if self.fail:
            return 500, "internal error"
        if method == "PUT" and path == "/latest/api/token":
            if not headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                return 400, "missing TTL"
            return 200, self.session
        if headers.get("x-aws-ec2-metadata-token") != self.session:
            return 401, "unauthorized"
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            return 200, self.role + "\n"
        if path == base + self.role:
            return 200, json.dumps(self.credentials)
        return 404, "not found"
