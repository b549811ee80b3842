"""``oxeo-flows clusters list/cleanup`` for GCE, against a loopback fake of the Compute API.

The fake serves the two REST calls the cleanup makes (``instances.aggregatedList`` and
``instances.delete``) with bodies shaped like Compute's; Google's own client library
(``googleapiclient``, the one dask-cloudprovider uses) talks to it in plaintext with anonymous
credentials because the stack's ``gcp.endpoints.compute`` is a loopback URL.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

PROJECT = "oxeo-main"


class FakeCompute:
    """In-memory instances; the handler below serves them."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.filters: list[str] = []
        self.deleted: list[str] = []

    def add(self, name: str, zone: str, labels: dict[str, str], created: str) -> None:
        self.instances[name] = {
            "id": str(abs(hash(name)) % 10**12),
            "name": name,
            "zone": f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}",
            "status": "RUNNING",
            "labels": labels,
            "creationTimestamp": created,
        }


def _handler(fake: FakeCompute) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != f"/compute/v1/projects/{PROJECT}/aggregated/instances":
                self._send({"error": {"code": 404, "message": url.path}}, 404)
                return
            flt = parse_qs(url.query).get("filter", [""])[0]
            fake.filters.append(flt)
            key = re.match(r"labels\.([a-z0-9_-]+):\*", flt)
            items: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for inst in fake.instances.values():
                if key and key.group(1) not in inst["labels"]:
                    continue
                zone = "zones/" + inst["zone"].rsplit("/", 1)[-1]
                items.setdefault(zone, {"instances": []})["instances"].append(inst)
            self._send({"kind": "compute#instanceAggregatedList", "items": items})

        def do_DELETE(self) -> None:
            m = re.match(
                rf"^/compute/v1/projects/{PROJECT}/zones/([^/]+)/instances/([^/?]+)", self.path
            )
            if not m or m.group(2) not in fake.instances:
                self._send({"error": {"code": 404, "message": self.path}}, 404)
                return
            fake.deleted.append(m.group(2))
            del fake.instances[m.group(2)]
            self._send({"kind": "compute#operation", "name": "op-1", "status": "RUNNING"})

    return Handler


@pytest.fixture
def compute() -> Iterator[tuple[FakeCompute, str]]:
    fake = FakeCompute()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cleanup_deletes_labelled_gce_vms_only(
    compute: tuple[FakeCompute, str], stack_file: Any
) -> None:
    from oxeo_flows.cli import app

    fake, endpoint = compute
    fake.add(
        "dask-1a2b3c4d-scheduler",
        "europe-west4-a",
        {
            "oxeo-flows-cluster": "oxeo-0badf00d",
            "oxeo-flows-flow-run": "fr-9",
            "oxeo-flows-stack": "local",
        },
        "2020-01-01T10:00:00.000-07:00",
    )
    fake.add(
        "dask-1a2b3c4d-worker-1",
        "europe-west4-b",
        {"oxeo-flows-cluster": "oxeo-0badf00d", "oxeo-flows-stack": "local"},
        "2020-01-01T10:00:01.000-07:00",
    )
    fake.add("postgres", "europe-west4-a", {"team": "db"}, "2020-01-01T10:00:00.000-07:00")
    stack_file(
        f"""
[tool.oxeo-flows.stacks.local.gcp]
project = "{PROJECT}"
[tool.oxeo-flows.stacks.local.gcp.endpoints]
compute = "{endpoint}"
"""
    )
    cli = CliRunner()
    listed = cli.invoke(app, ["clusters", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert {(r["name"], r["location"], r["cluster"]) for r in rows} == {
        ("dask-1a2b3c4d-scheduler", "europe-west4-a", "oxeo-0badf00d"),
        ("dask-1a2b3c4d-worker-1", "europe-west4-b", "oxeo-0badf00d"),
    }
    assert fake.filters[0] == "labels.oxeo-flows-cluster:* labels.oxeo-flows-stack = local"
    done = cli.invoke(app, ["clusters", "cleanup", "--older-than", "1d", "--yes"])
    assert done.exit_code == 0, done.output
    assert sorted(fake.deleted) == ["dask-1a2b3c4d-scheduler", "dask-1a2b3c4d-worker-1"]
    assert list(fake.instances) == ["postgres"]
