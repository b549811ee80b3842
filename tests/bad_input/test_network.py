"""`GcpNetwork` and `AwsNetwork` built directly: our error, never pydantic's."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows import AwsNetwork, GcpNetwork
from oxeo_flows.errors import ConfigError
from tests.bad_input._expect import cases, expect

P = "my-proj-1"
GCP_CASES = [
    ("project-missing", {"network": "net"}, "project", "is required"),
    ("network-missing", {"project": P}, "network", "is required"),
    (
        "network-underscore",
        {"project": P, "network": "Bad_Net"},
        "network",
        "lowercase letters, digits and hyphens",
    ),
    ("network-empty", {"project": P, "network": ""}, "network", "1-63 characters"),
    (
        "host-number-without-host",
        {"project": P, "network": "net", "host_project_number": "123456789012"},
        "host-project-number",
        "set both for a Shared VPC",
    ),
    (
        "subnetwork-without-region",
        {"project": P, "network": "net", "subnetwork": "sub"},
        "subnetwork 'sub'",
        "needs a region",
    ),
    (
        "number-letters",
        {"project": P, "network": "net", "project_number": "12ab"},
        "project-number",
        "gcloud projects describe PROJECT_ID",
    ),
    (
        "number-negative",
        {"project": P, "network": "net", "project_number": -5},
        "project-number",
        "6-19 digits",
    ),
    (
        "number-float",
        {"project": P, "network": "net", "project_number": 1.5},
        "project-number",
        "6-19 digits",
    ),
    (
        "region-short",
        {"project": P, "network": "net", "region": "EU"},
        "region",
        "like 'europe-west4'",
    ),
    (
        "range-upper",
        {"project": P, "network": "net", "reserved_ip_ranges": ("A",)},
        "reserved-ip-ranges.0",
        "lowercase letters",
    ),
    (
        "host-project-upper",
        {"project": P, "network": "net", "host_project": "X"},
        "host-project",
        "6-30 characters",
    ),
    (
        "path-with-project-id",
        {"project": P, "network": "projects/other-proj/global/networks/net"},
        "names the project by id",
        "with project-number set",
    ),
    (
        "path-mismatched-number",
        {
            "project": P,
            "project_number": "123456789012",
            "network": "projects/999999999999/global/networks/net",
        },
        "names project '999999999999'",
        "make them agree",
    ),
    ("key-typo", {"project": P, "netwrok": "net"}, "netwrok", "did you mean 'network'?"),
    (
        "project-cyrillic",
        {"project": "my-pr\u043ej-1", "network": "net"},
        "project",
        "lowercase letters",
    ),
    ("project-too-long", {"project": "a" * 40, "network": "net"}, "project", "6-30 characters"),
]


@pytest.mark.parametrize(("fields", "field", "fix"), cases(GCP_CASES))
def test_bad_gcp_network(fields: dict[str, Any], field: str, fix: str) -> None:
    message = expect(ConfigError, lambda: GcpNetwork(**fields), field, fix)
    assert message.startswith("Invalid configuration in GcpNetwork(...)")


AWS_CASES = [
    ("region-missing", {}, "region", "is required"),
    ("region-upper", {"region": "EU-WEST-1"}, "region", "like 'eu-west-1'"),
    ("vpc-bad", {"region": "eu-west-1", "vpc": "vpc-xyz"}, "vpc", "8 or 17 hex digits"),
    (
        "subnets-string",
        {"region": "eu-west-1", "subnets": "subnet-0123abcd"},
        "subnets",
        "valid tuple",
    ),
    (
        "subnet-key-typo",
        {"region": "eu-west-1", "subnet": ("subnet-0123abcd",)},
        "subnet",
        "did you mean 'subnets'?",
    ),
    (
        "sg-bad",
        {"region": "eu-west-1", "security_groups": ("sg-1",)},
        "security-groups.0",
        "'sg-' followed by 8 or 17 hex digits",
    ),
]


@pytest.mark.parametrize(("fields", "field", "fix"), cases(AWS_CASES))
def test_bad_aws_network(fields: dict[str, Any], field: str, fix: str) -> None:
    message = expect(ConfigError, lambda: AwsNetwork(**fields), field, fix)
    assert message.startswith("Invalid configuration in AwsNetwork(...)")
