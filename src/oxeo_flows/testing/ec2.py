"""An emulated EC2 (and S3, Secrets Manager...): moto's server, and instances that really boot.

`EC2Emulator` starts moto's ``ThreadedMotoServer`` on 127.0.0.1 and creates a VPC
``127.20.0.0/16`` (``network``) with a subnet ``127.20.1.0/24`` (moto hands out ``127.20.1.4``,
``.5``... as ``PrivateIpAddress``, all loopback) and a security group. moto keeps an
instance's UserData but runs nothing: a watcher thread boots every *running* instance the way
`oxeo_flows.testing.compute` boots a GCE VM (cloud-init parsed, bootstrap skipped, the
container's command run in this virtualenv as a process group bound to the instance's private
address), and stops it when the instance is terminated or stopped. A container that exits
with the cloud-init's ``shutdown -h now`` after it terminates its instance (dask-cloudprovider
sets ``InstanceInitiatedShutdownBehavior=terminate``).

The emulator serves moto's WSGI app behind a small middleware that records each call's action
(`EC2Emulator.call_times`, like `ComputeEmulator.call_times`) and wakes the watcher as soon as
a call that changes instances (RunInstances, TerminateInstances, ...) has been answered: an
instance starts booting when RunInstances returns, as on EC2, not at the watcher's next poll.
Only the action and the instances' ``Name`` tags are read from a request, never the rest of
its body (a CreateSecret's value goes through untouched).
"""

from __future__ import annotations

import base64
import io
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oxeo_flows.testing._boot import Machine, MachineHost

__all__ = ["EC2Emulator", "EmulatedInstance"]

_GONE = frozenset({"shutting-down", "terminated", "stopping", "stopped"})

#: EC2 actions after which the watcher looks at the instances at once.
_CHANGES = frozenset(
    {"RunInstances", "TerminateInstances", "StopInstances", "StartInstances", "RebootInstances"}
)


#: In the User-Agent of the emulator's own calls (its watcher), which are not recorded.
_OWN_AGENT = "oxeo-flows-ec2-emulator"


def _query(environ: dict[str, Any]) -> dict[str, list[str]] | None:
    """The parameters of an EC2 query-protocol request (its body is put back intact)."""
    form = str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded")
    if environ.get("REQUEST_METHOD") != "POST" or not form or environ.get("HTTP_X_AMZ_TARGET"):
        return None  # JSON-protocol services (Secrets Manager...) and S3 are not recorded
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    params = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return params if params.get("Action") else None


def _entry(params: dict[str, list[str]]) -> str:
    """``Action [Name tags]`` of a request."""
    names = [
        params.get(key[: -len("Key")] + "Value", [""])[0]
        for key, values in params.items()
        if key.startswith("TagSpecification.") and key.endswith(".Key") and values == ["Name"]
    ]
    return " ".join([params["Action"][0], *sorted(n for n in names if n)])


def _instance_ids(params: dict[str, list[str]]) -> list[str]:
    return [v for k, values in params.items() if k.startswith("InstanceId.") for v in values]


def _terminated_response(ids: list[str], start_response: Any) -> list[bytes]:
    """EC2's answer to TerminateInstances of instances that are terminated already."""
    state = "<code>48</code><name>terminated</name>"
    items = "".join(
        f"<item><instanceId>{iid}</instanceId><currentState>{state}</currentState>"
        f"<previousState>{state}</previousState></item>"
        for iid in ids
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<TerminateInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>{uuid.uuid4()}</requestId><instancesSet>{items}</instancesSet>"
        "</TerminateInstancesResponse>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _moto_app() -> tuple[Any, type[Any]]:
    """The WSGI app of moto, and its request handler without a log line per request."""
    from moto.moto_server import werkzeug_app
    from werkzeug.serving import WSGIRequestHandler

    base: type[Any] = getattr(werkzeug_app, "MotoRequestHandler", WSGIRequestHandler)

    class QuietHandler(base):  # type: ignore[misc]
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            return  # errors are still logged

    return werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app), QuietHandler


class _Recorder:
    """WSGI middleware: record each EC2 call; after one that changes instances, ``wake``.

    The emulator's own calls (its watcher, an instance shutting itself down) wake it too but
    are not recorded. Calls that change instances are served one at a time, and a
    TerminateInstances of instances terminated already is answered as EC2 does (they are
    terminated), where moto fails deleting their network interface again: an instance shuts
    itself down when its Dask process exits, and its cluster terminates it all the same.
    """

    def __init__(self, app: Any, calls: list[tuple[float, str]], wake: Callable[[], None]) -> None:
        self.app = app
        self.calls = calls
        self.wake = wake
        self._changing = threading.Lock()
        self._terminated: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        params = _query(environ)
        entry = None if params is None else _entry(params)
        if entry is not None and _OWN_AGENT not in environ.get("HTTP_USER_AGENT", ""):
            self.calls.append((time.monotonic(), entry))
        action = entry.split(" ", 1)[0] if entry else ""
        if params is None or action not in _CHANGES:
            response: Iterable[bytes] = self.app(environ, start_response)
            return response
        ids = _instance_ids(params)
        with self._changing:
            if action == "TerminateInstances" and ids and set(ids) <= self._terminated:
                return _terminated_response(ids, start_response)
            status: list[str] = []

            def capture(code: str, headers: Any, exc_info: Any = None) -> Any:
                status.append(code)
                return start_response(code, headers, exc_info)

            response = self.app(environ, capture)
            if action == "TerminateInstances" and status and status[0].startswith("200"):
                self._terminated.update(ids)
        self.wake()  # moto has applied the call: its state is what the next read sees
        return response


@dataclass(kw_only=True)
class EmulatedInstance(Machine):
    """One booted EC2 instance (``name`` is its instance id)."""

    @property
    def id(self) -> str:
        """The instance id."""
        return self.name

    def console_output(self) -> str:
        """The console so far."""
        return self.serial_output()


class EC2Emulator(MachineHost):
    """moto on 127.0.0.1 with a loopback VPC, and a watcher that boots instances.

    Args:
        region: The region the VPC is created in.
        boot_delay: Seconds from ``running`` to cloud-init starting.
        container_start_delay: Seconds from cloud-init to the container's command starting.
        poll: Seconds between the watcher's DescribeInstances calls when no call changed an
            instance (a RunInstances or TerminateInstances wakes it at once).
        network: The first two octets of the VPC (``NETWORK.0.0/16``) and the subnet
            (``NETWORK.1.0/24``); give each emulator on a host its own (``127.N``).

    Attributes:
        endpoint_url: moto's URL (``aws.endpoint-url``, ``AWS_ENDPOINT_URL``).
        vpc_id: The VPC (``127.20.0.0/16``).
        subnet_id: The subnet (``127.20.1.0/24``).
        security_group_id: A group allowing tcp 8786-8787 and all tcp within itself.
        instances: Booted instances by id.
        call_times: ``(time.monotonic(), "Action [Name tags]")`` of every EC2 call, in order.
    """

    def __init__(
        self,
        *,
        region: str = "eu-west-1",
        boot_delay: float = 0.0,
        container_start_delay: float = 0.0,
        poll: float = 0.2,
        network: str = "127.20",
    ) -> None:
        self.region = region
        self.network = network
        self.boot_delay = boot_delay
        self.container_start_delay = container_start_delay
        self.poll = poll
        self.endpoint_url = ""
        self.vpc_id = self.subnet_id = self.security_group_id = ""
        self.instances: dict[str, EmulatedInstance] = {}
        self._server: Any = None
        self._serving: threading.Thread | None = None
        self.call_times: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._die: dict[str, str] = {}
        self._lock = threading.RLock()
        self._dir = Path(tempfile.mkdtemp(prefix="oxeo-ec2-"))

    def client(self, service: str = "ec2") -> Any:
        """A boto3 client of ``service`` on the emulator."""
        return self._boto3_client(service, None)

    def _own_client(self) -> Any:
        """The emulator's own EC2 client (its calls are not in `call_times`)."""
        from botocore.config import Config

        return self._boto3_client("ec2", Config(user_agent_extra=_OWN_AGENT))

    def _boto3_client(self, service: str, config: Any) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fixed test credentials
            config=config,
        )

    def start(self) -> str:
        """Start moto, create the VPC, subnet and group, start the watcher; returns the URL."""
        from werkzeug.serving import make_server

        # moto's ThreadedMotoServer, with the recorder in front of its app.
        moto_app, handler = _moto_app()
        app = _Recorder(moto_app, self.call_times, self._wake.set)
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
        port = self._server.server_address[1]
        self._serving = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="oxeo-ec2-moto"
        )
        self._serving.start()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        ec2 = self._own_client()
        self.vpc_id = ec2.create_vpc(CidrBlock=f"{self.network}.0.0/16")["Vpc"]["VpcId"]
        self.subnet_id = ec2.create_subnet(
            VpcId=self.vpc_id,
            CidrBlock=f"{self.network}.1.0/24",
            AvailabilityZone=f"{self.region}a",
        )["Subnet"]["SubnetId"]
        group = ec2.create_security_group(
            GroupName="dask", Description="dask cluster", VpcId=self.vpc_id
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 8786,
                    "ToPort": 8787,
                    "IpRanges": [{"CidrIp": f"{self.network}.1.0/24"}],
                },
                {
                    "IpProtocol": "tcp",
                    "FromPort": 0,
                    "ToPort": 65535,
                    "UserIdGroupPairs": [{"GroupId": group}],
                },
            ],
        )
        self.security_group_id = group
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="oxeo-ec2-watch")
        self._watcher.start()
        return self.endpoint_url

    def stop(self) -> None:
        """Stop every container, the watcher and moto."""
        self._stop.set()
        self._wake.set()  # the watcher may be waiting out a long poll
        if self._watcher is not None:
            self._watcher.join(10)
        for inst in list(self.instances.values()):
            self._halt(inst)
        self.wait_idle()
        if self._server is not None:
            self._server.shutdown()
            if self._serving is not None:
                self._serving.join(10)
            self._server.server_close()
            self._server = None

    def _machines(self) -> list[Machine]:
        return list(self.instances.values())

    def live_instances(self) -> list[str]:
        """Ids of this emulator's instances (its subnet) that are pending or running."""
        pages = self._own_client().describe_instances(
            Filters=[
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
                {"Name": "subnet-id", "Values": [self.subnet_id]},
            ]
        )
        return [i["InstanceId"] for r in pages["Reservations"] for i in r["Instances"]]

    # ------------------------------------------------------------------ watcher

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Act on moto's current instance states now, then wait for boots/stops to finish."""
        self._reconcile_all(self._own_client())
        super().wait_idle(timeout)

    def _watch(self) -> None:
        ec2 = self._own_client()
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            self._reconcile_all(ec2)

    def _reconcile_all(self, ec2: Any) -> None:
        if self._stop.is_set():
            return
        try:
            # moto's state is per process: other emulators' instances are not looked at.
            found = ec2.describe_instances(
                Filters=[{"Name": "subnet-id", "Values": [self.subnet_id]}]
            )
        except Exception:  # moto restarting or stopping; the watcher tries again
            return
        for reservation in found.get("Reservations", []):
            for data in reservation.get("Instances", []):
                self._reconcile(ec2, data)

    def _reconcile(self, ec2: Any, data: dict[str, Any]) -> None:
        # moto's state is per process, shared with any other moto server in it: only the
        # instances in this emulator's own subnet are its VMs.
        if data.get("SubnetId") != self.subnet_id:
            return
        iid = data["InstanceId"]
        state = data.get("State", {}).get("Name")
        with self._lock:
            inst = self.instances.get(iid)
            if inst is None and state == "running" and data.get("PrivateIpAddress"):
                attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
                raw = (attr.get("UserData") or {}).get("Value") or ""
                user_data = base64.b64decode(raw) if raw else b""
                inst = EmulatedInstance(
                    name=iid, address=data["PrivateIpAddress"], console=self._dir / f"{iid}.log"
                )
                self.instances[iid] = inst
                self._spawn(self._boot, inst, user_data, name=iid)
            elif inst is not None and state in _GONE and not inst.stopped.is_set():
                self._spawn(self._halt, inst, name=f"halt-{iid}")

    def _boot(self, inst: EmulatedInstance, user_data: bytes) -> None:
        inst.log(f"[emulator] {inst.id}: running at {inst.address}")
        if inst.stopped.wait(self.boot_delay):
            return
        self._run_user_data(inst, user_data)

    def _shutdown(self, machine: Machine) -> None:
        # dask-cloudprovider sets InstanceInitiatedShutdownBehavior=terminate.
        try:
            self._own_client().terminate_instances(InstanceIds=[machine.name])
        except Exception as exc:
            machine.log(f"[emulator] terminate failed: {exc}")

    def _halt(self, inst: Machine) -> None:
        inst.stopped.set()
        if inst.container is not None:
            inst.container.stop()
