"""A loopback fake of the Compute Engine and Service Networking REST endpoints doctor reads.

Only the GET calls `oxeo_flows.doctor` makes are served, with the JSON shapes of the real APIs
(``compute#network``, ``compute#subnetwork``, ``compute#address``, ``compute#firewallList``,
``servicenetworking`` ``ListConnectionsResponse``); unknown paths answer 404 with a Google-style
error body. Tests set up the project's state (`GcpState`) and point ``gcp.endpoints.compute`` /
``gcp.endpoints.service-networking`` at ``fake.endpoint``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_COMPUTE = "https://www.googleapis.com/compute/v1"


@dataclass
class GcpState:
    """The fake project's network state (edit it in tests)."""

    project: str = "oxeo-main"
    number: str = "123456789012"
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    subnetworks: dict[tuple[str, str], str] = field(default_factory=dict)  # (region, name) -> CIDR
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (ip, prefix)
    firewalls: list[dict[str, Any]] = field(default_factory=list)
    connections: dict[str, list[str]] = field(default_factory=dict)  # network -> ranges

    def firewall(
        self, name: str, network: str, sources: list[str], ports: list[str] | None = None
    ) -> None:
        """Add an ingress rule allowing tcp ``ports`` (default 8786-8787) from ``sources``."""
        self.firewalls.append(
            {
                "kind": "compute#firewall",
                "name": name,
                "network": f"{_COMPUTE}/projects/{self.project}/global/networks/{network}",
                "direction": "INGRESS",
                "priority": 1000,
                "sourceRanges": sources,
                "allowed": [{"IPProtocol": "tcp", "ports": ports or ["8786-8787"]}],
                "disabled": False,
            }
        )

    def peer(self, network: str, ranges: list[str], state: str = "ACTIVE") -> None:
        """Create the private services connection and the network peering in ``state``."""
        self.connections[network] = list(ranges)
        self.networks.setdefault(network, {})["peerings"] = [
            {
                "name": "servicenetworking-googleapis-com",
                "network": "https://www.googleapis.com/compute/v1/projects/x-tp/global/networks/servicenetworking",
                "state": state,
                "exportCustomRoutes": False,
            }
        ]


class FakeGcpRest:
    """Serve `GcpState` on 127.0.0.1; ``requests`` records every path asked."""

    def __init__(self, state: GcpState | None = None) -> None:
        self.state = state or GcpState()
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                status, body = fake._route(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, for ``gcp.endpoints.*``."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeGcpRest:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ routes

    def _route(self, raw: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw)
        path, query = url.path, parse_qs(url.query)
        s = self.state
        base = rf"^/compute/v1/projects/{re.escape(s.project)}"
        if m := re.match(base + r"/global/networks/([^/]+)$", path):
            name = m.group(1)
            if name not in s.networks:
                return _not_found(f"network '{name}'")
            return 200, {
                "kind": "compute#network",
                "name": name,
                "selfLink": f"{_COMPUTE}/projects/{s.project}/global/networks/{name}",
                "autoCreateSubnetworks": False,
                "peerings": s.networks[name].get("peerings", []),
            }
        if m := re.match(base + r"/regions/([^/]+)/subnetworks/([^/]+)$", path):
            key = (m.group(1), m.group(2))
            if key not in s.subnetworks:
                return _not_found(f"subnetwork '{key[1]}'")
            return 200, {
                "kind": "compute#subnetwork",
                "name": key[1],
                "region": f"{_COMPUTE}/projects/{s.project}/regions/{key[0]}",
                "ipCidrRange": s.subnetworks[key],
            }
        if m := re.match(base + r"/global/addresses/([^/]+)$", path):
            name = m.group(1)
            if name not in s.addresses:
                return _not_found(f"address '{name}'")
            ip, prefix = s.addresses[name]
            return 200, {
                "kind": "compute#address",
                "name": name,
                "address": ip,
                "prefixLength": prefix,
                "purpose": "VPC_PEERING",
                "addressType": "INTERNAL",
                "status": "RESERVED",
            }
        if re.match(base + r"/global/firewalls$", path):
            return 200, {"kind": "compute#firewallList", "items": list(s.firewalls)}
        if path == "/v1/services/servicenetworking.googleapis.com/connections":
            wanted = (query.get("network") or [""])[0]
            m = re.match(rf"^projects/{re.escape(s.number)}/global/networks/([^/]+)$", wanted)
            if m is None:
                return 400, {"error": {"code": 400, "message": f"bad network {wanted!r}"}}
            ranges = s.connections.get(m.group(1))
            if ranges is None:
                return 200, {}
            return 200, {
                "connections": [
                    {
                        "network": wanted,
                        "service": "services/servicenetworking.googleapis.com",
                        "reservedPeeringRanges": ranges,
                        "peering": "servicenetworking-googleapis-com",
                    }
                ]
            }
        return _not_found(path)


def _not_found(what: str) -> tuple[int, dict[str, Any]]:
    return 404, {
        "error": {
            "code": 404,
            "message": f"The resource {what} was not found",
            "errors": [{"reason": "notFound", "domain": "global"}],
        }
    }


def clean_state() -> GcpState:
    """A correctly configured project: network, subnet, range, firewall, ACTIVE peering."""
    state = GcpState()
    state.networks["dask"] = {}
    state.subnetworks[("europe-west4", "dask-europe-west4")] = "10.10.0.0/20"
    state.addresses["vertex-peering"] = ("10.20.0.0", 16)
    state.firewall("dask-internal", "dask", ["10.10.0.0/20", "10.20.0.0/16"])
    state.peer("dask", ["vertex-peering"])
    return state
