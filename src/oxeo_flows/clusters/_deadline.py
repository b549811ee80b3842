"""Deadlines for cluster start-up, and the message that says what to check when one expires."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from oxeo_flows.clusters._hosts import is_internal, parse_address

__all__ = [
    "Deadline",
    "checklist",
    "run_in_thread",
    "scheduler_timeout_message",
]

T = TypeVar("T")

#: Default start deadlines in seconds, per backend.
DEFAULT_START_TIMEOUT = {"local": 120.0, "address": 30.0, "gcp": 600.0, "ec2": 600.0}


class Deadline:
    """A point in (monotonic) time, with the seconds left until it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.at = self.started + seconds

    def remaining(self) -> float:
        """Seconds left (0 when expired)."""
        return max(0.0, self.at - time.monotonic())

    def elapsed(self) -> float:
        """Seconds since the deadline was set."""
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.at


def run_in_thread(fn: Callable[[], T], *, timeout: float, name: str = "oxeo-deadline") -> T:
    """Run ``fn`` in a daemon thread and wait at most ``timeout`` seconds for it.

    A call that blocks (a socket connect, a handshake) cannot be interrupted; it is abandoned
    in its daemon thread instead, so the caller always gets control back on time.

    Raises:
        TimeoutError: ``fn`` did not return in time.
        BaseException: Whatever ``fn`` raised.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        msg = f"no answer within {timeout:g} s"
        raise TimeoutError(msg)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def checklist(
    *, cloud: str | None, vm: str | None = None, zone: str | None = None, region: str | None = None
) -> str:
    """The things to check when a scheduler is not reachable, as indented lines."""
    lines = [
        "Check:",
        "  1. route: the client's network reaches the scheduler's network (same VPC, or VPC "
        "peering / private services access with routes exchanged; a Vertex AI job needs its "
        "'network' set to the peered VPC, and the VM's subnet range must be imported by the peer)",
        "  2. firewall: an ingress rule allows tcp:8786-8787 to the Dask VMs FROM THE CLIENT'S "
        "RANGE (e.g. the Vertex reserved peering range or the client's subnet), plus all tcp "
        "between the Dask VMs themselves; never 0.0.0.0/0",
        "  3. egress: VMs without an external IP need Cloud NAT (GCP) / a NAT gateway or VPC "
        "endpoints (AWS) to pull the Docker image and pip packages",
        "  4. TLS: client and scheduler use the same scheme (tls:// vs tcp://) and certificates",
    ]
    if cloud == "gcp":
        target = vm or "VM_NAME"
        where = f" --zone {zone}" if zone else ""
        lines.append(
            f"  5. the VM's cloud-init log (image pull, scheduler start): "
            f"gcloud compute instances get-serial-port-output {target}{where}"
        )
    elif cloud == "ec2":
        target = vm or "INSTANCE_ID"
        where = f" --region {region}" if region else ""
        lines.append(
            f"  5. the instance's cloud-init log (image pull, scheduler start): "
            f"aws ec2 get-console-output --instance-id {target}{where} --latest --output text"
        )
    else:
        lines.append(
            "  5. the scheduler is running and listening on that address "
            "(dask scheduler logs; `ss -ltnp | grep 8786` on its host)"
        )
    return "\n".join(lines)


def scheduler_timeout_message(
    address: str,
    *,
    timeout: float,
    cause: str = "",
    hint: str = "",
    what: str = "Dask scheduler",
    cloud: str | None = None,
    vm: str | None = None,
    zone: str | None = None,
    region: str | None = None,
) -> str:
    """The message of a `ClusterStartTimeout` for a scheduler that did not answer."""
    try:
        _scheme, host, _port = parse_address(address)
        internal = is_internal(host)
    except ValueError:
        internal = None
    kind = {True: "an internal (private) address", False: "an external (public) address"}.get(
        internal,  # type: ignore[arg-type]
        "a host name",
    )
    lines = [
        f"{what} at {address} ({kind}) did not answer within the start deadline of {timeout:g} s"
        + (f" ({cause})" if cause else "")
        + ".",
    ]
    if hint:
        lines.append(hint)
    lines.append(checklist(cloud=cloud, vm=vm, zone=zone, region=region))
    lines.append(
        "Raise the deadline with dask_runner(..., start_timeout=SECONDS) or dask.start-timeout."
    )
    return "\n".join(lines)
