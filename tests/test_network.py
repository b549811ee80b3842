"""GcpNetwork / AwsNetwork: the spellings Google and AWS need, and bad input."""

from __future__ import annotations

import pytest

from oxeo_flows import AwsNetwork, ConfigError, GcpNetwork
from oxeo_flows._model import build


def test_vertex_and_compute_spellings() -> None:
    net = GcpNetwork(
        project="oxeo-main",
        project_number="123456789012",
        network="dask",
        subnetwork="dask-ew4",
        region="europe-west4",
        reserved_ip_ranges=("vertex-peering",),
    )
    assert net.vertex_network == "projects/123456789012/global/networks/dask"
    assert net.network_path == "projects/oxeo-main/global/networks/dask"
    assert net.subnetwork_path == "projects/oxeo-main/regions/europe-west4/subnetworks/dask-ew4"


def test_shared_vpc_uses_the_host_project() -> None:
    net = GcpNetwork(
        project="oxeo-main",
        project_number="123456789012",
        host_project="oxeo-network",
        host_project_number="998877665544",
        network="shared",
        subnetwork="eo",
        region="europe-west4",
    )
    assert net.vertex_network == "projects/998877665544/global/networks/shared"
    assert net.subnetwork_path == "projects/oxeo-network/regions/europe-west4/subnetworks/eo"


def test_full_network_path_is_split() -> None:
    net = GcpNetwork(project="oxeo-main", network="projects/123456789012/global/networks/dask")
    assert (net.network, net.project_number) == ("dask", "123456789012")


def test_missing_number_is_explained() -> None:
    net = GcpNetwork(project="oxeo-main", network="dask")
    with pytest.raises(ConfigError, match=r"project-number is not set.*gcloud projects describe"):
        _ = net.vertex_network


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"project": "oxeo-main", "network": "projects/oxeo-main/global/networks/dask"},
            "names the project by id .* needs the project NUMBER",
        ),
        (
            {
                "project": "oxeo-main",
                "project_number": "1234567890",
                "network": "projects/123456789012/global/networks/dask",
            },
            "make them agree",
        ),
        ({"project": "oxeo-main", "network": "Dask"}, "not a valid network name"),
        ({"project": "oxeo-main", "network": "dask", "subnetwork": "s"}, "needs a region"),
        (
            {"project": "oxeo-main", "network": "dask", "host_project_number": "123456789012"},
            "without host-project",
        ),
        ({"project": "x", "network": "dask"}, "not a valid GCP project id"),
    ],
)
def test_bad_gcp_networks(data: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build(GcpNetwork, data, where="GcpNetwork()")


def test_aws_network_ids() -> None:
    net = AwsNetwork(
        region="eu-west-1",
        vpc="vpc-0123abcd",
        subnets=("subnet-0123456789abcdef0",),
        security_groups=("sg-0123abcd",),
    )
    assert net.subnets == ("subnet-0123456789abcdef0",)
    with pytest.raises(ConfigError, match="not a security group id"):
        build(
            AwsNetwork,
            {"region": "eu-west-1", "security_groups": ["default"]},
            where="AwsNetwork()",
        )
