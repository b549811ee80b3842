"""`VertexJob` and `vertex_job`: every field, machine/accelerator pairs, the stack's [vertex]."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows import VertexJob, vertex_job
from oxeo_flows.errors import ConfigError
from tests.bad_input._expect import expect

OK: dict[str, Any] = {
    "image": "europe-docker.pkg.dev/my-proj-1/flows/etl:1",
    "region": "europe-west4",
    "service_account": "flows-runner@my-proj-1.iam.gserviceaccount.com",
}
T4 = "NVIDIA_TESLA_T4"

# (id, fields over OK, field named, fix text)
JOB_CASES = [
    ("image-missing", {"image": None}, "image", "pass image="),
    ("image-empty", {"image": ""}, "image", "e.g. 'prefecthq/prefect:3-python3.11'"),
    ("image-whitespace", {"image": "  "}, "image", "with a lowercase repository"),
    ("image-upper", {"image": "UPPER/case"}, "image", "with a lowercase repository"),
    ("image-space", {"image": "foo bar:1"}, "image", "REPOSITORY[:TAG]"),
    ("image-bad-digest", {"image": "foo@sha256:zz"}, "image", "@sha256:DIGEST"),
    ("region-missing", {"region": None}, "region", "set vertex.region or gcp.region"),
    ("region-underscore", {"region": "europe_west4"}, "region", "like 'europe-west4'"),
    ("region-int", {"region": 4}, "region", "valid string"),
    (
        "sa-missing",
        {"service_account": None},
        "service-account",
        "pass service_account='NAME@PROJECT.iam.gserviceaccount.com'",
    ),
    (
        "sa-not-email",
        {"service_account": "x@y"},
        "service-account",
        "NAME@PROJECT.iam.gserviceaccount.com",
    ),
    (
        "machine-typo",
        {"machine_type": "n1-standrd-8"},
        "machine-type",
        "did you mean 'n1-standard-8'",
    ),
    ("machine-upper", {"machine_type": "N1-STANDARD-8"}, "machine-type", "e.g. 'n1-standard-4'"),
    ("machine-empty", {"machine_type": ""}, "machine-type", "e.g. 'n1-standard-4'"),
    (
        "machine-custom-on-vertex",
        {"machine_type": "custom-3-1024"},
        "machine-type",
        "pick a preset such as 'n1-standard-4'",
    ),
    (
        "n1-with-l4",
        {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_L4", "accelerator_count": 1},
        "NVIDIA_L4",
        "use g2-standard-4",
    ),
    (
        "g2-with-t4",
        {"machine_type": "g2-standard-8", "accelerator_type": T4, "accelerator_count": 1},
        "g2-standard-8",
        "use an n1 machine type",
    ),
    (
        "e2-with-t4",
        {"machine_type": "e2-standard-8", "accelerator_type": T4, "accelerator_count": 1},
        "takes no GPUs",
        "e.g. 'n1-standard-8'",
    ),
    (
        "a100-times-3",
        {
            "machine_type": "a2-highgpu-4g",
            "accelerator_type": "NVIDIA_TESLA_A100",
            "accelerator_count": 3,
        },
        "3 x NVIDIA_TESLA_A100",
        "leave accelerator_type and accelerator_count out",
    ),
    (
        "t4-times-3",
        {"machine_type": "n1-standard-8", "accelerator_type": T4, "accelerator_count": 3},
        "3 x NVIDIA_TESLA_T4",
        "counts 1/2/4",
    ),
    (
        "accelerator-typo",
        {
            "machine_type": "n1-standard-8",
            "accelerator_type": "NVIDIA_TESLA_T5",
            "accelerator_count": 1,
        },
        "NVIDIA_TESLA_T5",
        "did you mean 'NVIDIA_TESLA_T4'",
    ),
    (
        "count-without-type",
        {"accelerator_count": 2},
        "accelerator_count is 2",
        "give both (e.g. accelerator_type='NVIDIA_TESLA_T4')",
    ),
    ("count-zero", {"accelerator_count": 0}, "accelerator-count", "greater than or equal to 1"),
    ("count-huge", {"accelerator_count": 99}, "accelerator-count", "less than or equal to 16"),
    (
        "count-float",
        {"accelerator_type": T4, "accelerator_count": 1.5},
        "accelerator-count",
        "valid integer",
    ),
    ("disk-small", {"boot_disk_size_gb": 10}, "boot-disk-size-gb", "greater than or equal to 100"),
    ("disk-huge", {"boot_disk_size_gb": 10**9}, "boot-disk-size-gb", "less than or equal to 64000"),
    ("disk-string", {"boot_disk_size_gb": "big"}, "boot-disk-size-gb", "valid integer"),
    ("disk-type-typo", {"boot_disk_type": "pd-balanced"}, "boot-disk-type", "'pd-ssd'"),
    (
        "run-time-negative",
        {"max_run_time_hours": -1},
        "max-run-time-hours",
        "greater than or equal to 1",
    ),
    ("wait-inf", {"max_wait_hours": float("inf")}, "max-wait-hours", "finite number"),
    ("wait-nan", {"max_wait_hours": float("nan")}, "max-wait-hours", "finite number"),
    ("wait-zero", {"max_wait_hours": 0}, "max-wait-hours", "greater than 0"),
    ("poll-zero", {"job_watch_poll_interval": 0}, "job-watch-poll-interval", "greater than 0"),
    ("strategy-typo", {"scheduling_strategy": "SPOTT"}, "scheduling-strategy", "'SPOT'"),
    (
        "restart-words",
        {"restart_job_on_worker_restart": "yes please"},
        "restart-job-on-worker-restart",
        "valid boolean",
    ),
    (
        "label-key-upper",
        {"labels": {"Team": "a"}},
        "label key 'Team'",
        "starting with a lowercase letter",
    ),
    (
        "label-value-space",
        {"labels": {"team": "A B"}},
        "label 'team'",
        "lowercase letters, digits, '_' and '-'",
    ),
    (
        "labels-too-many",
        {"labels": {f"k{i}": "v" for i in range(70)}},
        "labels",
        "at most 64 per resource",
    ),
    ("env-value-int", {"env": {"A": 3}}, "env.A", "valid string"),
    (
        "env-name-equals",
        {"env": {"A=B": "x"}},
        "env name 'A=B'",
        "not a valid environment variable name",
    ),
    ("env-name-empty", {"env": {"": "x"}}, "env name ''", "not a valid environment variable"),
    (
        "unknown-key",
        {"machine_typ": "n1-standard-4"},
        "machine-typ",
        "did you mean 'machine-type'?",
    ),
    (
        "network-bare-name",
        {"network": "Bad_Net"},
        "network",
        "projects/<PROJECT NUMBER>/global/networks/",
    ),
    (
        "network-table-bad-name",
        {"network": {"project": "my-proj-1", "network": "Bad_Net"}},
        "network",
        "lowercase letters, digits and hyphens",
    ),
    (
        "reserved-range-space",
        {"reserved_ip_ranges": ("Bad Range",)},
        "reserved-ip-ranges",
        "lowercase letters, digits and hyphens",
    ),
    ("command-empty", {"command": ""}, "command", "leave command out"),
    ("command-whitespace", {"command": "   "}, "command", "give the command to run"),
    (
        "api-key-secret-scheme",
        {"api_key_secret": "ftp://x"},
        "api-key-secret",
        "projects/<PROJECT>/secrets/<NAME>",
    ),
    (
        "persistent-resource-space",
        {"persistent_resource_id": "Bad Id"},
        "persistent-resource-id",
        "gcloud ai persistent-resources list",
    ),
    (
        "psc-attachment-partial",
        {"psc_network_attachment": "projects/p/regions/r"},
        "psc-network-attachment",
        "or the bare name",
    ),
]


@pytest.mark.parametrize(
    ("fields", "field", "fix"), [c[1:] for c in JOB_CASES], ids=[c[0] for c in JOB_CASES]
)
def test_bad_vertex_job(fields: dict[str, Any], field: str, fix: str) -> None:
    expect(ConfigError, lambda: VertexJob(**{**OK, **fields}), field, fix)


OPEN = (
    '[tool.oxeo-flows]\ndefault-stack = "v"\n[tool.oxeo-flows.stacks.v]\nrunner = "vertex"\n'
    "[tool.oxeo-flows.stacks.v.vertex]\nprivate-network = false\n"
    f'image = "{OK["image"]}"\nregion = "{OK["region"]}"\n'
    f'service-account = "{OK["service_account"]}"\n'
)

# (id, stack file, call, field named, fix text)
FACTORY_CASES = [
    (
        "override-typo",
        OPEN,
        lambda: vertex_job(machine_typ="x"),
        "'machine_typ'",
        "did you mean 'machine_type'?",
    ),
    (
        "override-bad-gpu",
        OPEN,
        lambda: vertex_job(machine_type="e2-standard-4", accelerator_type=T4, accelerator_count=1),
        "takes no GPUs",
        "n1 machine types",
    ),
    (
        "override-typo-before-network",
        OPEN.replace("private-network = false\n", ""),
        lambda: vertex_job(machine_typ="x"),
        "'machine_typ'",
        "did you mean 'machine_type'?",
    ),
    ("override-unknown", OPEN, lambda: vertex_job(gpu="T4"), "'gpu'", "VertexJob fields are"),
    ("unknown-pool", OPEN, lambda: vertex_job(pool="nope"), "pool 'nope'", "defined: (none)"),
    ("stack-int", OPEN, lambda: vertex_job(stack=3), "stack must be", "a stack name or None"),
    (
        "private-without-network",
        OPEN.replace("private-network = false\n", ""),
        vertex_job,
        "gcp.network is not set",
        "opt out with vertex.private-network = false",
    ),
    (
        "stack-gpu-names-file",
        OPEN + 'machine-type = "n1-standrd-8"\n',
        vertex_job,
        "machine-type",
        "did you mean 'n1-standard-8'",
    ),
    (
        "docker-pool-as-vertex",
        OPEN + '[tool.oxeo-flows.stacks.v.pools.d]\ntype = "docker"\n',
        lambda: vertex_job(pool="d"),
        "pools.d",
        "not 'vertex-ai'",
    ),
]


@pytest.mark.filterwarnings("ignore:stack 'v'. vertex.private-network is false")
@pytest.mark.parametrize(
    ("body", "call", "field", "fix"),
    [c[1:] for c in FACTORY_CASES],
    ids=[c[0] for c in FACTORY_CASES],
)
def test_bad_vertex_factory(stack_file, body: str, call, field: str, fix: str) -> None:
    stack_file(body)
    expect(ConfigError, call, field, fix)
