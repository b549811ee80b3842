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
"""

from __future__ import annotations

import base64
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oxeo_flows.testing._boot import Machine, MachineHost

__all__ = ["EC2Emulator", "EmulatedInstance"]

_GONE = frozenset({"shutting-down", "terminated", "stopping", "stopped"})


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
        poll: Seconds between the watcher's DescribeInstances calls.
        network: The first two octets of the VPC (``NETWORK.0.0/16``) and the subnet
            (``NETWORK.1.0/24``); give each emulator on a host its own (``127.N``).

    Attributes:
        endpoint_url: moto's URL (``aws.endpoint-url``, ``AWS_ENDPOINT_URL``).
        vpc_id: The VPC (``127.20.0.0/16``).
        subnet_id: The subnet (``127.20.1.0/24``).
        security_group_id: A group allowing tcp 8786-8787 and all tcp within itself.
        instances: Booted instances by id.
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
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._die: dict[str, str] = {}
        self._lock = threading.RLock()
        self._dir = Path(tempfile.mkdtemp(prefix="oxeo-ec2-"))

    def client(self, service: str = "ec2") -> Any:
        """A boto3 client of ``service`` on the emulator."""
        import boto3

        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fixed test credentials
        )

    def start(self) -> str:
        """Start moto, create the VPC, subnet and group, start the watcher; returns the URL."""
        from moto.server import ThreadedMotoServer

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        ec2 = self.client()
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
        if self._watcher is not None:
            self._watcher.join(10)
        for inst in list(self.instances.values()):
            self._halt(inst)
        self.wait_idle()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _machines(self) -> list[Machine]:
        return list(self.instances.values())

    def live_instances(self) -> list[str]:
        """Ids of this emulator's instances (its subnet) that are pending or running."""
        pages = self.client().describe_instances(
            Filters=[
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
                {"Name": "subnet-id", "Values": [self.subnet_id]},
            ]
        )
        return [i["InstanceId"] for r in pages["Reservations"] for i in r["Instances"]]

    # ------------------------------------------------------------------ watcher

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Act on moto's current instance states now, then wait for boots/stops to finish."""
        self._reconcile_all(self.client())
        super().wait_idle(timeout)

    def _watch(self) -> None:
        ec2 = self.client()
        while not self._stop.wait(self.poll):
            self._reconcile_all(ec2)

    def _reconcile_all(self, ec2: Any) -> None:
        if self._stop.is_set():
            return
        try:
            found = ec2.describe_instances()
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
            self.client().terminate_instances(InstanceIds=[machine.name])
        except Exception as exc:
            machine.log(f"[emulator] terminate failed: {exc}")

    def _halt(self, inst: Machine) -> None:
        inst.stopped.set()
        if inst.container is not None:
            inst.container.stop()
