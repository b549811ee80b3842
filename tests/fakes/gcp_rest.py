"""A loopback fake of the Google Cloud REST endpoints doctor reads.

Only the calls `oxeo_flows.doctor` makes (through ``googleapiclient``) are served, with the
JSON shapes of the real APIs: Compute Engine (``compute#network``, ``compute#subnetwork``,
``compute#address``, ``compute#firewallList``, ``compute#routerList``), Service Networking
(``ListConnectionsResponse``), Artifact Registry (``Repository``, ``getIamPolicy``) and Resource
Manager (``projects.getIamPolicy``); unknown paths answer 404 with a Google-style error body.
Tests set up the project's state (`GcpState`) and point ``gcp.endpoints.compute`` /
``gcp.endpoints.service-networking`` at ``fake.endpoint``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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
    private_google_access: set[tuple[str, str]] = field(default_factory=set)  # (region, subnet)
    routers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # region -> routers
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> policy
    project_policy: dict[str, Any] = field(default_factory=dict)

    def firewall(
        self,
        name: str,
        network: str,
        sources: list[str],
        ports: list[str] | None = None,
        *,
        priority: int = 1000,
        deny: bool = False,
        direction: str = "INGRESS",
        target_tags: list[str] | None = None,
        target_service_accounts: list[str] | None = None,
        source_tags: list[str] | None = None,
        disabled: bool = False,
    ) -> None:
        """Add a rule: by default an ingress allow of tcp ``ports`` (8786-8787) from ``sources``.

        ``ports=[]`` means every tcp port; for an egress rule ``sources`` are its destinations.
        """
        rule: dict[str, Any] = {
            "kind": "compute#firewall",
            "name": name,
            "network": f"{_COMPUTE}/projects/{self.project}/global/networks/{network}",
            "direction": direction,
            "priority": priority,
            "disabled": disabled,
        }
        rule["destinationRanges" if direction == "EGRESS" else "sourceRanges"] = sources
        spec: dict[str, Any] = {"IPProtocol": "tcp"}
        if ports != []:
            spec["ports"] = ports or ["8786-8787"]
        rule["denied" if deny else "allowed"] = [spec]
        if target_tags:
            rule["targetTags"] = target_tags
        if target_service_accounts:
            rule["targetServiceAccounts"] = target_service_accounts
        if source_tags:
            rule["sourceTags"] = source_tags
        self.firewalls.append(rule)

    def nat(self, region: str, network: str, subnets: list[str] | None = None) -> None:
        """A Cloud Router with Cloud NAT in ``region`` (all subnetworks, or only ``subnets``)."""
        nat: dict[str, Any] = {"name": "nat", "natIpAllocateOption": "AUTO_ONLY"}
        if subnets is None:
            nat["sourceSubnetworkIpRangesToNat"] = "ALL_SUBNETWORKS_ALL_IP_RANGES"
        else:
            nat["sourceSubnetworkIpRangesToNat"] = "LIST_OF_SUBNETWORKS"
            nat["subnetworks"] = [
                {
                    "name": f"{_COMPUTE}/projects/{self.project}/regions/{region}/subnetworks/{s}",
                    "sourceIpRangesToNat": ["ALL_IP_RANGES"],
                }
                for s in subnets
            ]
        self.routers.setdefault(region, []).append(
            {
                "kind": "compute#router",
                "name": f"router-{region}",
                "network": f"{_COMPUTE}/projects/{self.project}/global/networks/{network}",
                "nats": [nat],
            }
        )

    def repository(self, location: str, repo: str, readers: list[str] | None = None) -> str:
        """A Docker repository; ``readers`` get roles/artifactregistry.reader on it."""
        name = f"projects/{self.project}/locations/{location}/repositories/{repo}"
        bindings = [{"role": "roles/artifactregistry.reader", "members": list(readers or [])}]
        self.repositories[name] = {"version": 1, "bindings": bindings if readers else []}
        return name

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
                self._send(status, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                fake.requests.append(f"POST {self.path}")
                status, body = fake._route_post(self.path)
                self._send(status, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
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

    def _route_post(self, raw: str) -> tuple[int, dict[str, Any]]:
        path = unquote(urlsplit(raw).path)
        if path == f"/v1/projects/{self.state.project}:getIamPolicy":
            return 200, {"version": 1, "bindings": [], **self.state.project_policy}
        return _not_found(path)

    def _route(self, raw: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw)
        path, query = unquote(url.path), parse_qs(url.query)
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
                "privateIpGoogleAccess": key in s.private_google_access,
            }
        if m := re.match(base + r"/regions/([^/]+)/routers$", path):
            return 200, {"kind": "compute#routerList", "items": s.routers.get(m.group(1), [])}
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
        if m := re.match(
            r"^/v1/(projects/[^/]+/locations/[^/]+/repositories/[^/:]+)(:getIamPolicy)?$", path
        ):
            name = m.group(1)
            if name not in s.repositories:
                return _not_found(f"repository '{name}'")
            if m.group(2):
                return 200, s.repositories[name]
            return 200, {"name": name, "format": "DOCKER", "mode": "STANDARD_REPOSITORY"}
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


#: The Dask VMs' service account in `clean_state` (the stack's gcp.service-account).
VM_ACCOUNT = "prefect@oxeo-main.iam.gserviceaccount.com"


def clean_state() -> GcpState:
    """A correctly configured project: network, subnet with Private Google Access, range,
    firewall (Dask ports from subnet and range, all TCP inside the subnet), Cloud NAT, ACTIVE
    peering, and Artifact Registry repositories the VMs' service account may read."""
    state = GcpState()
    state.networks["dask"] = {}
    state.subnetworks[("europe-west4", "dask-europe-west4")] = "10.10.0.0/20"
    state.private_google_access.add(("europe-west4", "dask-europe-west4"))
    state.addresses["vertex-peering"] = ("10.20.0.0", 16)
    state.firewall("dask-internal", "dask", ["10.10.0.0/20", "10.20.0.0/16"])
    state.firewall("dask-intra-cluster", "dask", ["10.10.0.0/20"], ports=[])
    state.nat("europe-west4", "dask")
    state.peer("dask", ["vertex-peering"])
    state.repository("europe-west4", "dask", readers=[f"serviceAccount:{VM_ACCOUNT}"])
    state.repository("europe", "flows")
    return state
