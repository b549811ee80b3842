"""Validated descriptions of the private networks that Vertex jobs and Dask clusters use.

These are pure specs: no I/O, no cloud SDK. `GcpNetwork` renders the two spellings Google
needs (Vertex wants ``projects/<NUMBER>/global/networks/<NAME>``; Compute wants a subnetwork
path with the project *id*), which is where the user's peered-VPC setup went wrong.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationError, model_validator

from oxeo_flows._model import Model, format_validation_error
from oxeo_flows.errors import ConfigError

__all__ = [
    "AwsNetwork",
    "AwsNetworkFields",
    "GcpNetwork",
    "GcpNetworkFields",
    "parse_scheduler_address",
]

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_PROJECT_NUMBER = re.compile(r"^[0-9]{6,19}$")
# RFC 1035 labels, as Compute Engine requires for network, subnetwork and range names.
_GCP_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_GCP_ZONE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-[a-z]$")
_NETWORK_PATH = re.compile(r"^projects/(?P<project>[^/]+)/global/networks/(?P<name>[^/]+)$")
_SCHEDULER_ADDRESS = re.compile(
    r"^(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]+)$"
)
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
_AWS_ID = {
    "vpc": re.compile(r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$"),
    "subnet": re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$"),
    "sg": re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$"),
}

_SA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,29}@[a-z0-9.-]+\.gserviceaccount\.com$")

PROJECT_NUMBER_HINT = (
    "find it with: gcloud projects describe PROJECT_ID --format='value(projectNumber)'"
)


def check_project_id(value: str) -> str:
    """Validate a GCP project id (``my-project``)."""
    if not _PROJECT_ID.match(value):
        msg = (
            f"{value!r} is not a valid GCP project id: 6-30 characters, lowercase letters, "
            "digits and hyphens, starting with a letter"
        )
        raise ValueError(msg)
    return value


def check_project_number(value: str | int) -> str:
    """Validate a GCP project number (all digits); a project id given instead is explained."""
    text = str(value).strip()
    if _PROJECT_NUMBER.match(text):
        return text
    if _PROJECT_ID.match(text):
        msg = (
            f"{text!r} looks like a project id, but a project NUMBER is needed here "
            f"(Vertex AI networks are addressed by number); {PROJECT_NUMBER_HINT}"
        )
        raise ValueError(msg)
    msg = f"{text!r} is not a GCP project number (6-19 digits); {PROJECT_NUMBER_HINT}"
    raise ValueError(msg)


def check_gcp_name(value: str, what: str) -> str:
    """Validate a Compute Engine resource name (network, subnetwork, range)."""
    if not _GCP_NAME.match(value):
        msg = (
            f"{value!r} is not a valid {what} name: 1-63 characters, lowercase letters, "
            "digits and hyphens, starting with a letter and not ending with a hyphen"
        )
        raise ValueError(msg)
    return value


def check_region(value: str) -> str:
    """Validate a GCP region such as ``europe-west4``."""
    if _GCP_ZONE.match(value):
        msg = f"{value!r} is a zone, not a region; use {_GCP_ZONE.match(value).group(1)!r}"  # type: ignore[union-attr]
        raise ValueError(msg)
    if not _GCP_REGION.match(value):
        msg = f"{value!r} is not a GCP region (expected something like 'europe-west4')"
        raise ValueError(msg)
    return value


def check_zone(value: str) -> str:
    """Validate a GCP zone such as ``europe-west4-a``."""
    if not _GCP_ZONE.match(value):
        msg = f"{value!r} is not a GCP zone (expected something like 'europe-west4-a')"
        raise ValueError(msg)
    return value


def check_service_account(value: str) -> str:
    """Validate a service account email (``NAME@PROJECT.iam.gserviceaccount.com``)."""
    if not _SA_EMAIL.match(value):
        msg = (
            f"{value!r} is not a service account email "
            "(expected NAME@PROJECT.iam.gserviceaccount.com)"
        )
        raise ValueError(msg)
    return value


_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Validate GCP labels: keys and values of lowercase letters, digits, ``_`` and ``-``."""
    if len(labels) > 64:
        msg = f"{len(labels)} labels is too many: GCP allows at most 64 per resource"
        raise ValueError(msg)
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            msg = (
                f"label key {key!r} is not a valid GCP label key: 1-63 characters, "
                "lowercase letters, digits, '_' and '-', starting with a lowercase letter"
            )
            raise ValueError(msg)
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            msg = (
                f"label {key!r} has value {value!r}, not a valid GCP label value: at most "
                "63 characters, lowercase letters, digits, '_' and '-'"
            )
            raise ValueError(msg)
    return labels


GcpLabels = Annotated[dict[str, str], AfterValidator(check_labels)]
"""GCP resource labels, validated by `check_labels`."""
ServiceAccountEmail = Annotated[str, AfterValidator(check_service_account)]
"""A service account email, validated by `check_service_account`."""
ProjectId = Annotated[str, AfterValidator(check_project_id)]
"""A GCP project id, validated by `check_project_id`."""
ProjectNumber = Annotated[str, BeforeValidator(check_project_number)]
"""A GCP project number (digits; an int is accepted), validated by `check_project_number`."""
Region = Annotated[str, AfterValidator(check_region)]
"""A GCP region such as ``europe-west4``."""
Zone = Annotated[str, AfterValidator(check_zone)]
"""A GCP zone such as ``europe-west4-a``."""
NetworkName = Annotated[str, AfterValidator(lambda v: check_gcp_name(v, "network"))]
SubnetworkName = Annotated[str, AfterValidator(lambda v: check_gcp_name(v, "subnetwork"))]
RangeName = Annotated[str, AfterValidator(lambda v: check_gcp_name(v, "reserved IP range"))]


class _BuiltByUsers:
    """Mixin of specs users build directly: a validation error becomes a `ConfigError`.

    pydantic calls a custom ``__init__`` from ``model_validate`` too, so this is the one place.
    """

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            cls = type(self)
            assert issubclass(cls, Model)
            message = format_validation_error(exc, cls, where=f"{cls.__name__}(...)")
            raise ConfigError(message) from None


class GcpNetworkFields(Model):
    """The fields of a GCP network, all optional, with their checks.

    The one field set that `GcpNetwork` and the stack's ``[gcp]`` section share: a value the
    stack accepts is one the spec accepts.
    """

    project: ProjectId | None = None
    """Project id where jobs and VMs run, e.g. `oxeo-main`."""
    project_number: ProjectNumber | None = None
    """Number of `project` (digits); Vertex AI addresses networks by number."""
    network: NetworkName | None = None
    """VPC network name (peered with Vertex AI for private access); a full
    `projects/<NUMBER>/global/networks/<NAME>` path is split."""
    subnetwork: SubnetworkName | None = None
    """Subnetwork name in `region` where Dask VMs are placed."""
    region: Region | None = None
    """Region of the subnetwork and of Vertex jobs, e.g. `europe-west4`."""
    reserved_ip_ranges: tuple[RangeName, ...] = ()
    """Private-services-access range names Vertex AI jobs may use."""
    host_project: ProjectId | None = None
    """Shared VPC host project id that owns the network."""
    host_project_number: ProjectNumber | None = None
    """Shared VPC host project number."""

    @model_validator(mode="before")
    @classmethod
    def _split_network_path(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        key = "network" if "network" in data else None
        value = data.get("network") if key else None
        if isinstance(value, str) and (m := _NETWORK_PATH.match(value)):
            data = dict(data)
            data["network"] = m.group("name")
            number = m.group("project")
            if not _PROJECT_NUMBER.match(number):
                msg = (
                    f"network path {value!r} names the project by id ({number!r}), but a path "
                    "needs the project NUMBER (projects/<NUMBER>/global/networks/<NAME>); give "
                    f"just the name, network = {m.group('name')!r}, with project-number set"
                )
                raise ValueError(msg)
            target = (
                "host_project_number"
                if data.get("host_project") or data.get("host-project")
                else "project_number"
            )
            alias = target.replace("_", "-")
            given = data.get(target, data.get(alias))
            if given is not None and str(given) != number:
                msg = (
                    f"network path {value!r} names project {number!r} but {alias} is {given!r}; "
                    "give the network by name, or make them agree"
                )
                raise ValueError(msg)
            data[target] = number
        return data

    @model_validator(mode="after")
    def _consistent(self) -> GcpNetworkFields:
        if self.host_project_number and not self.host_project:
            msg = "host-project-number is set without host-project; set both for a Shared VPC"
            raise ValueError(msg)
        if self.subnetwork and not self.region:
            msg = f"subnetwork {self.subnetwork!r} needs a region (subnetworks are regional)"
            raise ValueError(msg)
        if self.reserved_ip_ranges and not self.network:
            msg = (
                f"reserved-ip-ranges {list(self.reserved_ip_ranges)} are set without a network; "
                "reserved ranges belong to the peered network (set network)"
            )
            raise ValueError(msg)
        return self


class GcpNetwork(_BuiltByUsers, GcpNetworkFields):
    """A VPC network (and optionally a subnetwork) in a GCP project, possibly a Shared VPC.

    Attributes:
        project: Project id where jobs and VMs run, e.g. ``oxeo-main``.
        project_number: Number of ``project`` (digits). Vertex AI addresses networks by number.
        network: VPC network name, e.g. ``dask``. A full
            ``projects/<NUMBER>/global/networks/<NAME>`` path is also accepted and split.
        subnetwork: Subnetwork name in ``region`` (Dask VMs are placed there).
        region: Region of the subnetwork and of Vertex jobs, e.g. ``europe-west4``.
        reserved_ip_ranges: Names of the private-services-access ranges Vertex may use.
        host_project: For a Shared VPC, the host project id that owns the network.
        host_project_number: For a Shared VPC, the host project's number (used in
            `vertex_network`).

    Example:
        ```python
        from oxeo_flows import GcpNetwork

        net = GcpNetwork(project="oxeo-main", project_number="123456789012", network="dask",
                         subnetwork="dask-europe-west4", region="europe-west4")
        assert net.vertex_network == "projects/123456789012/global/networks/dask"
        ```
    """

    project: ProjectId
    network: NetworkName

    @property
    def network_project(self) -> str:
        """The project id that owns the network (the Shared VPC host, or ``project``)."""
        return self.host_project or self.project

    @property
    def vertex_network(self) -> str:
        """The network as Vertex AI wants it: ``projects/<NUMBER>/global/networks/<NAME>``.

        Raises:
            ConfigError: The needed project number is not set.
        """
        from oxeo_flows.errors import ConfigError

        number = self.host_project_number if self.host_project else self.project_number
        if not number:
            key = "host-project-number" if self.host_project else "project-number"
            msg = (
                f"Vertex AI needs the network as projects/<NUMBER>/global/networks/{self.network}, "
                f"but {key} is not set; {PROJECT_NUMBER_HINT}"
            )
            raise ConfigError(msg)
        return f"projects/{number}/global/networks/{self.network}"

    @property
    def network_path(self) -> str:
        """The network as Compute Engine wants it: ``projects/<ID>/global/networks/<NAME>``."""
        return f"projects/{self.network_project}/global/networks/{self.network}"

    @property
    def subnetwork_path(self) -> str | None:
        """``projects/<ID>/regions/<REGION>/subnetworks/<NAME>``, or None without a subnetwork."""
        if not self.subnetwork:
            return None
        return (
            f"projects/{self.network_project}/regions/{self.region}/subnetworks/{self.subnetwork}"
        )


def check_aws_region(value: str) -> str:
    """Validate an AWS region such as ``eu-west-1``."""
    if not _AWS_REGION.match(value):
        msg = f"{value!r} is not an AWS region (expected something like 'eu-west-1')"
        raise ValueError(msg)
    return value


AwsRegion = Annotated[str, AfterValidator(check_aws_region)]
"""An AWS region such as ``eu-west-1``."""
VpcId = Annotated[str, AfterValidator(lambda v: _check_aws_id(v, "vpc", "VPC id"))]
"""A VPC id (``vpc-...``)."""
SubnetId = Annotated[str, AfterValidator(lambda v: _check_aws_id(v, "subnet", "subnet id"))]
"""A subnet id (``subnet-...``)."""
SecurityGroupId = Annotated[
    str, AfterValidator(lambda v: _check_aws_id(v, "sg", "security group id"))
]
"""A security group id (``sg-...``)."""


class AwsNetworkFields(Model):
    """The fields of an AWS network, all optional: shared by `AwsNetwork` and ``[aws]``."""

    region: AwsRegion | None = None
    """AWS region, e.g. `eu-west-1`."""
    vpc: VpcId | None = None
    """VPC id (`vpc-...`)."""
    subnets: tuple[SubnetId, ...] = ()
    """Subnet ids (`subnet-...`); the first is used for single-subnet resources."""
    security_groups: tuple[SecurityGroupId, ...] = ()
    """Security group ids (`sg-...`)."""


class AwsNetwork(_BuiltByUsers, AwsNetworkFields):
    """A VPC in one AWS region, with the subnets and security groups to place instances in.

    Attributes:
        region: AWS region, e.g. ``eu-west-1``.
        vpc: VPC id (``vpc-...``).
        subnets: Subnet ids (``subnet-...``); the first is used for single-subnet resources.
        security_groups: Security group ids (``sg-...``).
    """

    region: AwsRegion


def _check_aws_id(value: str, kind: str, what: str) -> str:
    if not _AWS_ID[kind].match(value):
        msg = f"{value!r} is not a {what} (expected '{kind}-' followed by 8 or 17 hex digits)"
        raise ValueError(msg)
    return value


def parse_scheduler_address(address: str) -> tuple[str, str, int]:
    """Split a Dask scheduler address into ``(scheme, host, port)``.

    Args:
        address: ``tls://HOST:PORT`` or ``tcp://HOST:PORT``.

    Returns:
        The scheme, host and port.

    Raises:
        ValueError: The address is malformed (a `ConfigError` when raised from a stack).
    """
    match = _SCHEDULER_ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if not match:
        msg = (
            f"{address!r} is not a Dask scheduler address; expected tls://HOST:PORT "
            "(or tcp://HOST:PORT), e.g. 'tls://10.0.0.5:8786'"
        )
        raise ValueError(msg)
    scheme, host, port = match.group("scheme"), match.group("host"), int(match.group("port"))
    if scheme not in ("tcp", "tls"):
        msg = f"{address!r}: scheme {scheme!r} is not supported; use tls:// or tcp://"
        raise ValueError(msg)
    if not 0 < port < 65536:
        msg = f"{address!r}: port {port} is out of range 1-65535"
        raise ValueError(msg)
    return scheme, host.strip("[]"), port
