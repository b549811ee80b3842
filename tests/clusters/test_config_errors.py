"""Bad input dies early with a `ConfigError` that names the key and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows import ConfigError, dask_runner, load_stack

GCP = {
    "project": "oxeo-main",
    "zone": "europe-west4-a",
    "network": "dask",
    "subnetwork": "dask-sub",
    "region": "europe-west4",
}
AWS = {
    "region": "eu-west-1",
    "subnets": ["subnet-0123abcd"],
    "security-groups": ["sg-0123abcd"],
}
IMAGE = {"docker-image": "eu.gcr.io/oxeo-main/flows:1"}


def _stack(gcp: dict[str, Any] | None = None, aws: dict[str, Any] | None = None) -> Any:
    return load_stack(overrides={"gcp": gcp or {}, "aws": aws or {}})


CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("unknown backend", {"backend": "kubernetes"}, {}, "unknown Dask backend"),
    (
        "malformed address",
        {"backend": "address", "address": "10.0.0.5:8786"},
        {},
        "tls://HOST:PORT",
    ),
    ("bad scheme", {"backend": "address", "address": "ws://10.0.0.5:8786"}, {}, "not supported"),
    (
        "port out of range",
        {"backend": "address", "address": "tcp://10.0.0.5:99999"},
        {},
        "out of range",
    ),
    ("address backend without address", {"backend": "address"}, {}, "needs dask.address"),
    (
        "plain tcp without opt-in",
        {"backend": "address", "address": "tcp://10.0.0.5:8786"},
        {},
        "dask.plaintext = true",
    ),
    ("no workers and no adapt", {"backend": "local", "n_workers": 0}, {}, "wait forever"),
    (
        "nanny off on a local cluster",
        {"backend": "local", "nanny": False},
        {},
        "dask.nanny = false applies to the gcp and ec2 backends, not 'local'",
    ),
    (
        "nanny off with TLS off",
        {"backend": "gcp", "nanny": False, "tls": {"enabled": False}, "gcp": IMAGE},
        {"gcp": GCP},
        "dask.nanny = false needs the VMs to read their TLS from a per-cluster secret, and TLS "
        "is off",
    ),
    (
        "nanny off with metadata delivery",
        {"backend": "ec2", "nanny": False, "tls": {"vm_certificates": "metadata"}, "ec2": IMAGE},
        {"aws": AWS},
        "dask.tls.vm-certificates is 'metadata'",
    ),
    (
        "nanny off on the vertex backend",
        {"backend": "vertex", "nanny": False},
        {"gcp": GCP},
        "vertex workers run without a Nanny already",
    ),
    (
        "tls address without material",
        {"backend": "address", "address": "tls://10.0.0.5:8786"},
        {},
        "no TLS material",
    ),
    (
        "tls half configured",
        {"backend": "address", "address": "tls://10.0.0.5:8786", "tls": {"ca_file": "ca.pem"}},
        {},
        "missing",
    ),
    (
        "file and secret",
        {
            "backend": "address",
            "address": "tls://1.2.3.4:8786",
            "tls": {"ca_file": "a", "ca_secret": "b", "cert_file": "c", "key_file": "d"},
        },
        {},
        "not both",
    ),
    (
        "tcp with tls files",
        {
            "backend": "address",
            "address": "tcp://10.0.0.5:8786",
            "tls": {"ca_file": "a", "cert_file": "b", "key_file": "c"},
        },
        {},
        "use tls://",
    ),
    ("negative timeout", {"backend": "local", "start_timeout": -1}, {}, "start-timeout"),
    ("zero timeout", {"backend": "local", "start_timeout": 0}, {}, "start-timeout"),
    ("adapt min > max", {"backend": "local", "adapt": (5, 2)}, {}, "minimum <= maximum"),
    ("adapt not a pair", {"backend": "local", "adapt": (1, 2, 3)}, {}, "(minimum, maximum)"),
    ("negative workers", {"backend": "local", "n_workers": -2}, {}, "n-workers"),
    ("unknown key", {"backend": "local", "n_worker": 2}, {}, "did you mean 'n-workers'"),
    (
        "unknown sizing setting",
        {"backend": "local", "parameters": {"gpus": "g"}},
        {},
        "cannot be sized",
    ),
    (
        "sizing not for backend",
        {"backend": "local", "parameters": {"worker_machine_type": "m"}},
        {},
        "does not apply",
    ),
    (
        "gpus without type",
        {"backend": "gcp", "gcp": {"ngpus": 2, **IMAGE}},
        {"gcp": GCP},
        "gpu-type is not set",
    ),
    (
        "gcp without project",
        {"backend": "gcp", "gcp": IMAGE},
        {"gcp": {"zone": "europe-west4-a"}},
        "gcp.project",
    ),
    (
        "gcp without zone",
        {"backend": "gcp", "gcp": IMAGE},
        {"gcp": {"project": "oxeo-main", "network": "dask"}},
        "zone",
    ),
    (
        "gcp without network",
        {"backend": "gcp", "gcp": IMAGE},
        {"gcp": {"project": "oxeo-main", "zone": "europe-west4-a"}},
        "gcp.network and gcp.subnetwork",
    ),
    (
        "network without project",
        {"backend": "gcp", "gcp": {"zone": "europe-west4-a", **IMAGE}},
        {"gcp": {"network": "dask"}},
        "gcp.project",
    ),
    (
        "zone outside region",
        {"backend": "gcp", "gcp": {"zone": "us-east1-b", **IMAGE}},
        {"gcp": GCP},
        "not in gcp.region",
    ),
    ("gcp without image", {"backend": "gcp"}, {"gcp": GCP}, "docker-image"),
    (
        "bad gcp label",
        {"backend": "gcp", "gcp": {"labels": {"Team": "x"}, **IMAGE}},
        {"gcp": GCP},
        "not a valid GCP label key",
    ),
    (
        "processes on a cloud backend",
        {"backend": "gcp", "processes": True, "gcp": IMAGE},
        {"gcp": GCP},
        "processes applies",
    ),
    (
        "ec2 without subnet",
        {"backend": "ec2", "ec2": {"docker_image": "d"}},
        {"aws": {"region": "eu-west-1", "security-groups": ["sg-0123abcd"]}},
        "needs a subnet",
    ),
    (
        "ec2 without security groups",
        {"backend": "ec2", "ec2": {"docker_image": "d"}},
        {"aws": {"region": "eu-west-1", "subnets": ["subnet-0123abcd"]}},
        "needs security groups",
    ),
    (
        "ec2 without region",
        {"backend": "ec2", "ec2": {"docker_image": "d", "subnet": "subnet-0123abcd"}},
        {},
        "aws.region",
    ),
    (
        "ec2 bad subnet id",
        {"backend": "ec2", "ec2": {"subnet": "my-subnet"}},
        {"aws": AWS},
        "subnet id",
    ),
    ("ec2 bad ami", {"backend": "ec2", "ec2": {"ami": "ubuntu"}}, {"aws": AWS}, "AMI id"),
    (
        "adapt on address",
        {
            "backend": "address",
            "address": "tcp://10.0.0.5:8786",
            "adapt": (1, 2),
            "plaintext": True,
        },
        {},
        "adapt does not apply",
    ),
]


@pytest.mark.parametrize(("case", "overrides", "stack", "expect"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_config_error(
    case: str, overrides: dict[str, Any], stack: dict[str, Any], expect: str
) -> None:
    overrides = dict(overrides)
    backend = overrides.pop("backend")
    with pytest.raises(ConfigError) as info:
        dask_runner(backend, stack=_stack(**stack) if stack else None, **overrides)
    assert expect in str(info.value), str(info.value)


def test_errors_from_the_stack_file_name_the_file(stack_file: Any) -> None:
    stack_file('[tool.oxeo-flows.stacks.local.dask]\nbackend = "address"\naddress = "nope"\n')
    with pytest.raises(ConfigError) as info:
        dask_runner()
    assert "pyproject.toml" in str(info.value)
    assert "dask.address" in str(info.value)
