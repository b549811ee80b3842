"""An emulated Compute Engine: the REST API on 127.0.0.1, and VMs that really boot.

`ComputeEmulator` serves the calls dask-cloudprovider, `oxeo_flows.clusters` and their users
make (``instances`` insert / get / list / aggregatedList / delete / getSerialPortOutput,
``zoneOperations`` get / wait, ``machineTypes``, ``images``, ``subnetworks``, and a token
endpoint), with the JSON shapes and error bodies of the real API. ``insert`` validates what
the real API validates (instance name, machine type in the zone, subnetwork in the zone's
region, label rules, metadata size, GPUs on e2) and gives each VM its own loopback address
(``127.10.0.N``) as ``networkIP`` while it is PROVISIONING.

Booting a VM (see `oxeo_flows.testing._boot`): after ``boot_delay`` seconds the VM is RUNNING;
its cloud-init's bootstrap steps are logged to the serial console and skipped; after
``container_start_delay`` seconds the container's command runs in this virtualenv as a
process group bound to the VM's address. Deleting the VM stops it; a container that exits
makes the VM TERMINATED when its cloud-init shuts down after it (dask-cloudprovider's
``auto_shutdown``); its output is the serial console.

Faults: `fail_next` (e.g. 503s), `quota_exceeded`, `die_at_boot` (a container that exits at
start; shared with the EC2 emulator), `firewall` (the scheduler port drops or refuses connections).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from oxeo_flows.testing._boot import BootPlan, Machine, MachineHost, SilentListener, bind_command

__all__ = ["MACHINE_TYPES", "ComputeEmulator", "EmulatedVM", "SilentListener"]

_API = "https://www.googleapis.com/compute/v1"
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_METADATA_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_METADATA_VALUE_MAX = 256 * 1024
_METADATA_TOTAL_MAX = 512 * 1024

#: Machine types of every emulated zone: name -> (vCPUs, memory MB).
MACHINE_TYPES: dict[str, tuple[int, int]] = {
    "e2-micro": (2, 1024),
    "e2-small": (2, 2048),
    "e2-medium": (2, 4096),
    **{f"e2-standard-{n}": (n, n * 4096) for n in (2, 4, 8, 16, 32)},
    **{f"e2-highmem-{n}": (n, n * 8192) for n in (2, 4, 8, 16)},
    **{f"n1-standard-{n}": (n, n * 3840) for n in (1, 2, 4, 8, 16, 32)},
    **{f"n1-highmem-{n}": (n, n * 6656) for n in (2, 4, 8, 16)},
    **{f"n2-standard-{n}": (n, n * 4096) for n in (2, 4, 8, 16, 32)},
}


@dataclass(kw_only=True)
class EmulatedVM(Machine):
    """One emulated instance (``name``, ``address``, ``console`` and its container: `Machine`)."""

    zone: str
    id: str
    body: dict[str, Any]
    created: str
    status: str = "PROVISIONING"
    listener: SilentListener | None = None


class _HttpError(Exception):
    def __init__(self, code: int, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


class ComputeEmulator(MachineHost):
    """Compute Engine on 127.0.0.1. Use as a context manager, or `start()` / `stop()`.

    Args:
        project: The project the emulator serves.
        zones: Zones it knows (their regions follow from the names).
        subnetworks: ``{"REGION/NAME": "CIDR"}`` of the subnetworks VMs can use.
        boot_delay: Seconds a VM spends PROVISIONING/STAGING before it is RUNNING.
        container_start_delay: Seconds from RUNNING to the container's command starting (the
            image pull and Docker start).
        address_prefix: The first three octets of the VMs' loopback addresses.

    Attributes:
        calls: Every API call, in order, as ``"METHOD name"`` (e.g. ``"insert dask-x-scheduler"``).
        vms: The instances by name (deleted ones are removed).
    """

    def __init__(
        self,
        *,
        project: str = "oxeo-test",
        zones: tuple[str, ...] = ("europe-west4-a", "europe-west4-b", "us-central1-a"),
        subnetworks: dict[str, str] | None = None,
        boot_delay: float = 0.0,
        container_start_delay: float = 0.0,
        address_prefix: str = "127.10.0",
    ) -> None:
        self.project = project
        self.zones = tuple(zones)
        self.subnetworks = dict(
            subnetworks if subnetworks is not None else {"europe-west4/dask": "127.10.0.0/16"}
        )
        self.boot_delay = boot_delay
        self.container_start_delay = container_start_delay
        self.calls: list[str] = []
        self.call_times: list[tuple[float, str]] = []
        self.vms: dict[str, EmulatedVM] = {}
        self._prefix = address_prefix
        self._hosts = itertools.count(2)
        self._ids = itertools.count(4_000_000_000_000_001)
        self._ops: dict[str, dict[str, Any]] = {}
        self._faults: list[tuple[str, int, str, str, list[int]]] = []
        self._firewall: dict[int, str] = {}
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._die: dict[str, str] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="oxeo-gce-"))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the value for ``gcp.endpoints.compute``."""
        assert self._server is not None, "start() the emulator first"
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_endpoint(self) -> str:
        """The base URL for a discovery client's ``client_options.api_endpoint``."""
        return f"http://{self.endpoint}/compute/v1/"

    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns `endpoint`."""
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = emulator._handle(self.command, self.path, raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        """Delete every VM (stopping its processes), then stop serving."""
        for name in list(self.vms):
            self._delete_vm(name, wait=True)
        self.wait_idle()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _machines(self) -> list[Machine]:
        return list(self.vms.values())

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        code: int = 503,
        *,
        times: int = 1,
        method: str = "*",
        message: str = "The service is currently unavailable.",
        reason: str = "backendError",
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``insert``, ``list``... or ``*``)."""
        with self._lock:
            self._faults.append((method, code, message, reason, [times]))

    def quota_exceeded(self, *, times: int = 1, metric: str = "CPUS") -> None:
        """Refuse the next ``times`` inserts as the real API does when a quota is exhausted."""
        region = self.zones[0].rsplit("-", 1)[0]
        self.fail_next(
            403,
            times=times,
            method="insert",
            reason="quotaExceeded",
            message=f"Quota '{metric}' exceeded.  Limit: 8.0 in region {region}.",
        )

    def firewall(self, port: int = 8786, *, mode: str = "drop") -> None:
        """Block ``port`` on every VM: ``drop`` (accept, never answer) or ``refuse``."""
        if mode not in ("drop", "refuse"):
            msg = f"firewall mode must be 'drop' or 'refuse', not {mode!r}"
            raise ValueError(msg)
        self._firewall[port] = mode

    # ------------------------------------------------------------------ HTTP

    def _handle(self, method: str, raw_path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        path = url.path
        if path.startswith("/compute/v1"):
            path = path[len("/compute/v1") :]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if path in ("/token", "/oauth2/v4/token") and method == "POST":
                self._record("token", "")
                return 200, {"access_token": "emulated", "token_type": "Bearer", "expires_in": 3600}
            body = json.loads(raw) if raw else {}
            return self._route(method, path, query, body)
        except _HttpError as exc:
            return exc.code, _error(exc.code, exc.message, exc.reason)

    def _record(self, call: str, target: str) -> None:
        entry = f"{call} {target}".strip()
        with self._lock:
            self.calls.append(entry)
            self.call_times.append((time.monotonic(), entry))
            for fault in self._faults:
                fmethod, code, message, reason, left = fault
                if fmethod in ("*", call) and left[0] > 0:
                    left[0] -= 1
                    if left[0] == 0:
                        self._faults.remove(fault)
                    raise _HttpError(code, message, reason)

    def _route(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        m = re.match(r"^/projects/([^/]+)/(.*)$", path)
        if not m:
            raise _HttpError(404, f"The requested URL {path} was not found.", "notFound")
        project, rest = m.group(1), m.group(2)
        if project != self.project and not rest.startswith("global/images"):
            raise _HttpError(404, f"The resource 'projects/{project}' was not found", "notFound")
        if rest == "aggregated/instances" and method == "GET":
            self._record("aggregatedList", "")
            return 200, self._aggregated(query.get("filter"))
        if zm := re.match(r"^zones/([^/]+)/(.*)$", rest):
            zone, tail = zm.group(1), zm.group(2)
            self._zone(zone)
            return self._zone_route(method, zone, tail, query, body)
        if rm := re.match(r"^regions/([^/]+)/subnetworks(?:/([^/]+))?$", rest):
            return self._subnetworks(rm.group(1), rm.group(2))
        if im := re.match(r"^global/images(?:/family)?/([^/]+)$", rest):
            self._record("images.get", im.group(1))
            return 200, {
                "kind": "compute#image",
                "name": im.group(1),
                "selfLink": f"{_API}/projects/{project}/global/images/{im.group(1)}",
                "status": "READY",
            }
        raise _HttpError(404, f"The requested URL {path} was not found.", "notFound")

    def _zone(self, zone: str) -> None:
        if zone not in self.zones:
            raise _HttpError(
                400, f"Invalid value for field 'zone': '{zone}'. Unknown zone.", "invalid"
            )

    def _zone_route(
        self, method: str, zone: str, tail: str, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if tail == "instances":
            if method == "POST":
                self._record("insert", str(body.get("name", "")))
                return 200, self._insert(zone, body)
            self._record("list", query.get("filter", ""))
            items = [self._resource(vm) for vm in self._matching(zone, query.get("filter"))]
            out: dict[str, Any] = {"kind": "compute#instanceList", "id": f"projects/{zone}"}
            if items:
                out["items"] = items
            return 200, out
        if im := re.match(r"^instances/([^/]+)(/serialPort)?$", tail):
            name = im.group(1)
            vm = self.vms.get(name)
            if vm is None or vm.zone != zone:
                raise _HttpError(
                    404,
                    f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                    "was not found",
                    "notFound",
                )
            if im.group(2):
                self._record("getSerialPortOutput", name)
                text = vm.serial_output()
                start = int(query.get("start", "0") or 0)
                return 200, {
                    "kind": "compute#serialPortOutput",
                    "contents": text[start:],
                    "start": str(start),
                    "next": str(len(text)),
                    "selfLink": _link(self.project, zone, f"instances/{name}/serialPort"),
                }
            if method == "DELETE":
                self._record("delete", name)
                op = self._operation(zone, "delete", f"instances/{name}", done=False)
                self._delete_vm(name, op=op)
                return 200, op
            self._record("get", name)
            return 200, self._resource(vm)
        if om := re.match(r"^operations/([^/]+)(/wait)?$", tail):
            self._record("operations.wait" if om.group(2) else "operations.get", om.group(1))
            found = self._ops.get(om.group(1))
            if found is None:
                raise _HttpError(404, f"The resource 'operations/{om.group(1)}' was not found")
            op = found
            if om.group(2):
                end = time.monotonic() + 120
                while op["status"] != "DONE" and time.monotonic() < end:
                    time.sleep(0.05)
            return 200, dict(op)
        if mm := re.match(r"^machineTypes(?:/([^/]+))?$", tail):
            if mm.group(1):
                self._record("machineTypes.get", mm.group(1))
                if mm.group(1) not in MACHINE_TYPES:
                    raise _HttpError(
                        404,
                        f"The resource 'projects/{self.project}/zones/{zone}/machineTypes/"
                        f"{mm.group(1)}' was not found",
                        "notFound",
                    )
                return 200, self._machine_type(zone, mm.group(1))
            self._record("machineTypes.list", zone)
            return 200, {
                "kind": "compute#machineTypeList",
                "items": [self._machine_type(zone, n) for n in MACHINE_TYPES],
            }
        raise _HttpError(404, f"The requested URL zones/{zone}/{tail} was not found.", "notFound")

    def _machine_type(self, zone: str, name: str) -> dict[str, Any]:
        cpus, memory = MACHINE_TYPES[name]
        return {
            "kind": "compute#machineType",
            "name": name,
            "zone": zone,
            "guestCpus": cpus,
            "memoryMb": memory,
            "selfLink": _link(self.project, zone, f"machineTypes/{name}"),
        }

    def _subnetworks(self, region: str, name: str | None) -> tuple[int, dict[str, Any]]:
        self._record("subnetworks.get" if name else "subnetworks.list", name or region)
        found = {
            key.split("/", 1)[1]: cidr
            for key, cidr in self.subnetworks.items()
            if key.split("/", 1)[0] == region
        }

        def item(n: str) -> dict[str, Any]:
            return {
                "kind": "compute#subnetwork",
                "name": n,
                "region": f"{_API}/projects/{self.project}/regions/{region}",
                "ipCidrRange": found[n],
                "privateIpGoogleAccess": True,
                "selfLink": f"{_API}/projects/{self.project}/regions/{region}/subnetworks/{n}",
            }

        if name is None:
            return 200, {"kind": "compute#subnetworkList", "items": [item(n) for n in found]}
        if name not in found:
            raise _HttpError(
                404,
                f"The resource 'projects/{self.project}/regions/{region}/subnetworks/{name}' "
                "was not found",
                "notFound",
            )
        return 200, item(name)

    # ------------------------------------------------------------------ instances

    def _operation(self, zone: str, kind: str, target: str, *, done: bool) -> dict[str, Any]:
        name = f"operation-{int(time.time() * 1000)}-{next(self._ids)}"
        op = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "zone": f"{_API}/projects/{self.project}/zones/{zone}",
            "operationType": kind,
            "targetLink": _link(self.project, zone, target),
            "status": "DONE" if done else "RUNNING",
            "progress": 100 if done else 0,
            "insertTime": _now(),
            "selfLink": _link(self.project, zone, f"operations/{name}"),
        }
        self._ops[name] = op
        return op

    def _validate(self, zone: str, body: dict[str, Any]) -> None:
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _HttpError(
                400,
                f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
            )
        if name in self.vms:
            raise _HttpError(
                409,
                f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' "
                "already exists",
                "alreadyExists",
            )
        machine = str(body.get("machineType", ""))
        mm = re.search(r"zones/([^/]+)/machineTypes/([^/]+)$", machine)
        if not mm or mm.group(1) != zone or mm.group(2) not in MACHINE_TYPES:
            raise _HttpError(
                400,
                f"Invalid value for field 'resource.machineType': '{machine}'. Machine type "
                f"with name '{mm.group(2) if mm else machine}' does not exist in zone '{zone}'.",
            )
        mtype = mm.group(2)
        if body.get("guestAccelerators") and mtype.startswith("e2-"):
            raise _HttpError(
                400,
                f"Invalid resource usage: 'Accelerators are not supported for machine type "
                f"'{mtype}'; use an N1 machine type or an accelerator-optimized one.'",
            )
        region = zone.rsplit("-", 1)[0]
        for nic in body.get("networkInterfaces") or [{}]:
            sub = str(nic.get("subnetwork", ""))
            sm = re.search(r"projects/([^/]+)/regions/([^/]+)/subnetworks/([^/]+)$", sub)
            if not sm:
                raise _HttpError(
                    400,
                    f"Invalid value for field 'resource.networkInterfaces[0].subnetwork': "
                    f"'{sub}'. The URL is malformed.",
                )
            if sm.group(2) != region:
                raise _HttpError(
                    400,
                    f"Invalid value for field 'resource.networkInterfaces[0].subnetwork': "
                    f"'{sub}'. Subnetwork must be in the same region as the instance "
                    f"({region}).",
                )
            if f"{region}/{sm.group(3)}" not in self.subnetworks:
                raise _HttpError(
                    400,
                    f"Invalid value for field 'resource.networkInterfaces[0].subnetwork': "
                    f"'{sub}'. The referenced subnetwork resource cannot be found.",
                )
        labels = body.get("labels") or {}
        if len(labels) > 64:
            raise _HttpError(400, "Invalid value for field 'resource.labels': at most 64 labels")
        for key, value in labels.items():
            if not _LABEL_KEY.match(str(key)) or not _LABEL_VALUE.match(str(value)):
                raise _HttpError(
                    400,
                    f"Invalid value for field 'resource.labels': '{key}={value}'. Label keys "
                    "and values can only contain lowercase letters, numeric characters, "
                    "underscores and dashes (keys start with a letter), 63 characters at most.",
                )
        total = 0
        for item in (body.get("metadata") or {}).get("items") or []:
            key, value = str(item.get("key", "")), str(item.get("value", ""))
            if not _METADATA_KEY.match(key):
                raise _HttpError(400, f"Invalid value for field 'resource.metadata': key '{key}'")
            size = len(value.encode())
            total += size + len(key)
            if size > _METADATA_VALUE_MAX:
                raise _HttpError(
                    400,
                    f"Invalid value for field 'resource.metadata': the value of '{key}' is "
                    f"{size} bytes; a single value may be at most 256 KB.",
                )
        if total > _METADATA_TOTAL_MAX:
            raise _HttpError(
                400,
                f"Invalid value for field 'resource.metadata': {total} bytes in total; "
                "metadata may be at most 512 KB.",
            )

    def _insert(self, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._validate(zone, body)
            name = body["name"]
            vm = EmulatedVM(
                name=name,
                zone=zone,
                id=str(next(self._ids)),
                address=f"{self._prefix}.{next(self._hosts)}",
                body=body,
                console=self._dir / f"{name}.log",
                created=_now(),
            )
            self.vms[name] = vm
            op = self._operation(zone, "insert", f"instances/{name}", done=True)
        self._spawn(self._boot, vm, name=name)
        return op

    def _resource(self, vm: EmulatedVM) -> dict[str, Any]:
        body = vm.body
        nic: dict[str, Any] = {
            "kind": "compute#networkInterface",
            "name": "nic0",
            "network": f"{_API}/projects/{self.project}/global/networks/default",
            "subnetwork": str((body.get("networkInterfaces") or [{}])[0].get("subnetwork", "")),
            "networkIP": vm.address,
        }
        configs = (body.get("networkInterfaces") or [{}])[0].get("accessConfigs")
        if configs:
            # The emulated external address is the VM's own loopback address.
            nic["accessConfigs"] = [{**configs[0], "natIP": vm.address}]
        return {
            "kind": "compute#instance",
            "id": vm.id,
            "name": vm.name,
            "zone": f"{_API}/projects/{self.project}/zones/{vm.zone}",
            "machineType": f"{_API}/projects/{self.project}/{body.get('machineType')}",
            "status": vm.status,
            "creationTimestamp": vm.created,
            "networkInterfaces": [nic],
            "labels": dict(body.get("labels") or {}),
            "metadata": {"kind": "compute#metadata", **(body.get("metadata") or {})},
            "selfLink": _link(self.project, vm.zone, f"instances/{vm.name}"),
        }

    def _matching(self, zone: str | None, expression: str | None) -> list[EmulatedVM]:
        with self._lock:
            vms = [vm for vm in self.vms.values() if zone is None or vm.zone == zone]
        return [vm for vm in vms if _filter(self._resource(vm), expression)]

    def _aggregated(self, expression: str | None) -> dict[str, Any]:
        items: dict[str, Any] = {}
        for zone in self.zones:
            found = [self._resource(vm) for vm in self._matching(zone, expression)]
            items[f"zones/{zone}"] = (
                {"instances": found}
                if found
                else {
                    "warning": {
                        "code": "NO_RESULTS_ON_PAGE",
                        "message": "There are no results for scope 'zones/"
                        + zone
                        + "' on this page.",
                    }
                }
            )
        return {"kind": "compute#instanceAggregatedList", "id": "aggregated", "items": items}

    # ------------------------------------------------------------------ booting

    def _user_data(self, vm: EmulatedVM) -> str:
        for item in (vm.body.get("metadata") or {}).get("items") or []:
            if item.get("key") in ("user-data", "startup-script"):
                return str(item.get("value", ""))
        return ""

    def _boot(self, vm: EmulatedVM) -> None:
        vm.log(f"[emulator] {vm.name}: PROVISIONING, networkIP {vm.address}")
        if vm.stopped.wait(self.boot_delay / 2):
            return
        vm.status = "STAGING"
        if vm.stopped.wait(self.boot_delay / 2):
            return
        vm.status = "RUNNING"
        vm.log(f"[emulator] {vm.name}: RUNNING")
        self._run_user_data(vm, self._user_data(vm))

    def _fault(self, machine: Machine, plan: BootPlan, argv: list[str]) -> list[str]:
        assert isinstance(machine, EmulatedVM)
        if machine.role == "scheduler" and 8786 in self._firewall:
            # The real scheduler listens elsewhere; 8786 drops (or refuses) connections.
            argv, _role = bind_command(
                plan.command, machine.address, port=_free_port(machine.address)
            )
            if self._firewall[8786] == "drop":
                machine.listener = SilentListener(machine.address, 8786)
        return super()._fault(machine, plan, argv)

    def _shutdown(self, machine: Machine) -> None:
        assert isinstance(machine, EmulatedVM)
        machine.status = "STOPPING"
        if machine.listener is not None:
            machine.listener.close()
            machine.listener = None
        machine.status = "TERMINATED"

    def _delete_vm(
        self, name: str, *, op: dict[str, Any] | None = None, wait: bool = False
    ) -> None:
        with self._lock:
            vm = self.vms.get(name)
            if vm is None or vm.stopped.is_set():
                return
            vm.stopped.set()
            vm.status = "STOPPING"

        def run() -> None:
            if vm.container is not None:
                vm.container.stop()
            if vm.listener is not None:
                vm.listener.close()
            with self._lock:
                self.vms.pop(name, None)
            if op is not None:
                op.update(status="DONE", progress=100, endTime=_now())

        if wait:
            run()
            return
        self._spawn(run, name=f"delete-{name}")


# ----------------------------------------------------------------------------- helpers


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _link(project: str, zone: str, tail: str) -> str:
    return f"{_API}/projects/{project}/zones/{zone}/{tail}"


def _error(code: int, message: str, reason: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


_TERM = re.compile(r"\(?\s*([A-Za-z0-9_.-]+)\s*(=|!=|:|eq|ne)\s*\"?([^\")]*?)\"?\s*\)?(?:\s|$)")


def _filter(resource: dict[str, Any], expression: str | None) -> bool:
    """The subset of the list filter syntax the clients use: ``a = b``, ``a != b``, ``a:*``."""
    if not expression or not expression.strip():
        return True
    for field_path, op, wanted in _TERM.findall(expression.strip()):
        value: Any = resource
        for part in field_path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if op == ":":
            ok = value is not None and (wanted in ("*", str(value)))
        elif op in ("=", "eq"):
            ok = value is not None and re.fullmatch(wanted, str(value)) is not None
        else:
            ok = value is None or re.fullmatch(wanted, str(value)) is None
        if not ok:
            return False
    return True
