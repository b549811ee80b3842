"""`dask_runner` and the ``[dask]`` sections (local, address, gcp, ec2, vertex, tls)."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows import dask_runner
from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import load_stack
from tests.bad_input._expect import cases, expect

TLS = "tls://10.0.0.1:8786"


# (id, dask overrides, field named, fix text)
SECTION_CASES = [
    ("backend-typo", {"backend": "gpc"}, "dask.backend", "'gcp'"),
    ("n-workers-negative", {"n_workers": -1}, "dask.n-workers", "greater than or equal to 0"),
    ("n-workers-zero-no-adapt", {"n_workers": 0}, "n-workers is 0", "adapt = [0, N]"),
    ("n-workers-typo", {"n_wokers": 2}, "dask.n-wokers", "did you mean 'n-workers'?"),
    (
        "threads-nan",
        {"threads_per_worker": float("nan")},
        "dask.threads-per-worker",
        "finite number",
    ),
    (
        "threads-zero",
        {"threads_per_worker": 0},
        "dask.threads-per-worker",
        "greater than or equal to 1",
    ),
    ("start-timeout-inf", {"start_timeout": float("inf")}, "dask.start-timeout", "finite number"),
    ("start-timeout-zero", {"start_timeout": 0}, "dask.start-timeout", "greater than 0"),
    ("adapt-reversed", {"adapt": [5, 1]}, "dask.adapt", "0 <= minimum <= maximum"),
    ("adapt-negative", {"adapt": [-1, 3]}, "dask.adapt", "0 <= minimum"),
    ("adapt-three-items", {"adapt": [1, 2, 3]}, "dask.adapt", "at most 2 items"),
    ("parameters-unknown", {"parameters": {"a": "x"}}, "'a'", "choose from: adapt_max"),
    ("address-missing", {"backend": "address"}, "dask.address", "e.g. 'tls://10.0.0.5:8786'"),
    (
        "address-no-scheme",
        {"backend": "address", "address": "10.0.0.1:8786"},
        "dask.address",
        "expected tls://HOST:PORT",
    ),
    (
        "address-empty",
        {"backend": "address", "address": ""},
        "dask.address",
        "expected tls://HOST:PORT",
    ),
    (
        "address-http",
        {"backend": "address", "address": "http://x:1"},
        "dask.address",
        "use tls:// or tcp://",
    ),
    (
        "address-port-range",
        {"backend": "address", "address": "tls://x:99999"},
        "dask.address",
        "out of range 1-65535",
    ),
    (
        "address-plain-tcp",
        {"backend": "address", "address": "tcp://10.0.0.1:8786"},
        "plain tcp://",
        "opt in with dask.plaintext = true",
    ),
    (
        "tls-file-and-secret",
        {"backend": "address", "address": TLS, "tls": {"ca_file": "/tmp/x", "ca_secret": "y"}},
        "ca-file or ca-secret",
        "not both",
    ),
    (
        "tls-partial",
        {"backend": "address", "address": TLS, "tls": {"ca_file": "/etc/hostname"}},
        "dask.tls",
        "missing: cert-file or cert-secret",
    ),
    (
        "gcp-worker-typo",
        {"gcp": {"worker_machine_type": "n1-standrd-8"}},
        "worker-machine-type",
        "did you mean 'n1-standard-8'",
    ),
    (
        "gcp-e2-with-gpu",
        {
            "gcp": {
                "worker_machine_type": "e2-standard-4",
                "ngpus": 1,
                "gpu_type": "nvidia-tesla-t4",
            }
        },
        "takes no GPUs",
        "e.g. 'n1-standard-8'",
    ),
    (
        "gcp-ngpus-without-type",
        {"gcp": {"ngpus": 1}},
        "gpu-type is not set",
        "gcloud compute accelerator-types list",
    ),
    (
        "gcp-disk-small",
        {"gcp": {"disk_size_gb": 1}},
        "dask.gcp.disk-size-gb",
        "greater than or equal to 10",
    ),
    (
        "gcp-label-upper",
        {"gcp": {"labels": {"A": "b"}}},
        "label key 'A'",
        "starting with a lowercase letter",
    ),
    ("gcp-zone-region-only", {"gcp": {"zone": "europe"}}, "dask.gcp.zone", "'europe-west4-a'"),
    (
        "ec2-type-upper",
        {"ec2": {"worker_instance_type": "T3.MEDIUM"}},
        "dask.ec2.worker-instance-type",
        "e.g. 'g5.xlarge'",
    ),
    ("ec2-subnet-bad", {"ec2": {"subnet": "subnet-x"}}, "dask.ec2.subnet", "8 or 17 hex digits"),
    ("ec2-ami-name", {"ec2": {"ami": "ubuntu"}}, "dask.ec2.ami", "'ami-' followed by"),
    (
        "ec2-volume-negative",
        {"ec2": {"volume_size_gb": -1}},
        "dask.ec2.volume-size-gb",
        "greater than or equal to 8",
    ),
    ("ec2-tag-int", {"ec2": {"tags": {"k": 3}}}, "dask.ec2.tags.k", "valid string"),
    (
        "vertex-count-zero",
        {"vertex": {"worker_count": 0}},
        "dask.vertex.worker-count",
        "greater than or equal to 1",
    ),
    (
        "vertex-port-privileged",
        {"vertex": {"scheduler_port": 80}},
        "dask.vertex.scheduler-port",
        "greater than or equal to 1024",
    ),
    (
        "vertex-machine-typo",
        {"vertex": {"worker_machine_type": "n1-standrd-4"}},
        "worker-machine-type",
        "did you mean 'n1-standard-4'",
    ),
    pytest.param(
        {"memory_limit": "lots"},
        "dask.memory-limit",
        "e.g. '4GiB'",
        id="memory-limit-words",
    ),
    pytest.param(
        {"gcp": {"disk_type": "ssd"}},
        "dask.gcp.disk-type",
        "pd-ssd",
        id="gcp-disk-type-typo",
    ),
    pytest.param(
        {"gcp": {"service_account": "bob"}},
        "dask.gcp.service-account",
        "NAME@PROJECT.iam.gserviceaccount.com",
        id="gcp-service-account-not-email",
    ),
    pytest.param(
        {"gcp": {"docker_image": "Bad Image"}},
        "dask.gcp.docker-image",
        "lowercase repository",
        id="gcp-docker-image-space",
    ),
    pytest.param(
        {"ec2": {"worker_instance_type": "t3.mediun"}},
        "dask.ec2.worker-instance-type",
        "did you mean 't3.medium'",
        id="ec2-type-typo",
    ),
]


@pytest.mark.parametrize(("dask", "field", "fix"), cases(SECTION_CASES))
def test_bad_dask_section(dask: dict[str, Any], field: str, fix: str) -> None:
    expect(ConfigError, lambda: load_stack(overrides={"dask": dask}, environ={}), field, fix)


# (id, call, field named, fix text)
RUNNER_CASES = [
    ("backend-typo", lambda: dask_runner("gpc"), "'gpc'", "choose one of: local, address"),
    ("backend-empty", lambda: dask_runner(""), "''", "choose one of: local"),
    ("backend-int", lambda: dask_runner(3), "3", "choose one of"),
    (
        "override-typo",
        lambda: dask_runner("local", n_wokers=2),
        "dask.n-wokers",
        "did you mean 'n-workers'?",
    ),
    ("gcp-without-project", lambda: dask_runner("gcp"), "gcp.project", "OXEO_FLOWS_GCP__PROJECT"),
    ("ec2-without-region", lambda: dask_runner("ec2"), "aws.region", "'ec2' Dask backend needs"),
    (
        "vertex-without-vertex-runner",
        lambda: dask_runner("vertex"),
        "runner",
        "set runner = 'vertex'",
    ),
    (
        "section-key-at-top",
        lambda: dask_runner("gcp", worker_machine_type="n1-standard-4"),
        "dask.worker-machine-type",
        "Valid keys here",
    ),
    ("stack-int", lambda: dask_runner("local", stack=3), "stack must be", "a stack name"),
    pytest.param(
        lambda: dask_runner(
            "address",
            address=TLS,
            tls={
                "ca_file": "/nonexistent/ca.pem",
                "cert_file": "/nonexistent/c.pem",
                "key_file": "/nonexistent/k.pem",
            },
        ),
        "ca-file",
        "does not exist",
        id="tls-files-missing",
    ),
    pytest.param(
        lambda: dask_runner(
            "address",
            address=TLS,
            tls={"ca_secret": "ftp://x", "cert_secret": "a", "key_secret": "b"},
        ),
        "dask.tls.ca-secret",
        "env://VAR",
        id="tls-secret-bad-scheme",
    ),
    pytest.param(
        lambda: dask_runner(
            "address", address=TLS, tls={"ca_file": "/tmp", "cert_file": "/tmp", "key_file": "/tmp"}
        ),
        "ca-file",
        "is a directory",
        id="tls-files-are-directories",
    ),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(RUNNER_CASES))
def test_bad_dask_runner(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)
