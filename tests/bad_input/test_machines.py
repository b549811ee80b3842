"""The machine/accelerator table, through its public surfaces: `VertexJob` and ``[dask.gcp]``."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows import VertexJob
from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import load_stack
from tests.bad_input._expect import cases, expect

OK: dict[str, Any] = {
    "image": "europe-docker.pkg.dev/my-proj-1/flows/etl:1",
    "region": "europe-west4",
    "service_account": "flows-runner@my-proj-1.iam.gserviceaccount.com",
}

VERTEX_CASES = [
    (
        "a3-with-t4",
        ("a3-highgpu-8g", "NVIDIA_TESLA_T4", 1),
        "comes with 8 x NVIDIA_H100_80GB",
        "leave accelerator_type and accelerator_count out",
    ),
    ("g2-count-mismatch", ("g2-standard-8", "NVIDIA_L4", 2), "2 x NVIDIA_L4", "use g2-standard-24"),
    (
        "v100-times-3",
        ("n1-standard-8", "NVIDIA_TESLA_V100", 3),
        "3 x NVIDIA_TESLA_V100",
        "counts 1/2/4/8",
    ),
    (
        "p100-times-8",
        ("n1-standard-8", "NVIDIA_TESLA_P100", 8),
        "8 x NVIDIA_TESLA_P100",
        "counts 1/2/4",
    ),
    (
        "n2-with-t4",
        ("n2-standard-8", "NVIDIA_TESLA_T4", 1),
        "(n2) takes no GPUs",
        "only to n1 machine types",
    ),
    (
        "c2-with-t4",
        ("c2-standard-8", "NVIDIA_TESLA_T4", 1),
        "(c2) takes no GPUs",
        "e.g. 'n1-standard-8'",
    ),
    (
        "v100-too-many-vcpus",
        ("n1-standard-96", "NVIDIA_TESLA_V100", 1),
        "at most 12 vCPUs",
        "use 8 x NVIDIA_TESLA_V100 or a smaller n1",
    ),
    (
        "gpu-as-machine",
        ("nvidia-tesla-t4", None, None),
        "'nvidia-tesla-t4'",
        "see the table in oxeo_flows.machines",
    ),
    (
        "compute-spelling-on-vertex",
        ("n1-standard-8", "nvidia-tesla-t4", 1),
        "accelerator-type",
        "use the API's enum name, e.g. 'NVIDIA_TESLA_T4'",
    ),
    (
        "trailing-space",
        ("n1-standard-8", "NVIDIA_TESLA_T4 ", 1),
        "'NVIDIA_TESLA_T4 '",
        "e.g. 'NVIDIA_TESLA_T4'",
    ),
]


@pytest.mark.parametrize(("combo", "field", "fix"), cases(VERTEX_CASES))
def test_vertex_machine_combo(combo: tuple[Any, Any, Any], field: str, fix: str) -> None:
    machine, accelerator, count = combo
    expect(
        ConfigError,
        lambda: VertexJob(
            **OK, machine_type=machine, accelerator_type=accelerator, accelerator_count=count
        ),
        field,
        fix,
    )


DASK_CASES = [
    (
        "custom-odd-vcpus",
        {"worker_machine_type": "n1-custom-3-1024"},
        "n1-custom-3-1024",
        "1 or an even number up to 96 vCPUs",
    ),
    (
        "custom-memory-step",
        {"worker_machine_type": "n1-custom-4-999999"},
        "n1-custom-4-999999",
        "use n1-custom-4-1000192",
    ),
    (
        "custom-e2-with-gpu",
        {"worker_machine_type": "e2-custom-8-32768", "ngpus": 1, "gpu_type": "nvidia-tesla-t4"},
        "(e2) takes no GPUs",
        "e.g. 'n1-standard-8'",
    ),
    (
        "t4-times-3",
        {"worker_machine_type": "n1-standard-4", "ngpus": 3, "gpu_type": "nvidia-tesla-t4"},
        "3 x nvidia-tesla-t4",
        "counts 1/2/4",
    ),
    (
        "l4-on-n1",
        {"worker_machine_type": "n1-standard-4", "ngpus": 1, "gpu_type": "nvidia-l4"},
        "does not attach to 'n1-standard-4'",
        "use g2-standard-4",
    ),
    (
        "vertex-spelling-on-compute",
        {"worker_machine_type": "n1-standard-4", "ngpus": 1, "gpu_type": "NVIDIA_TESLA_T4"},
        "gpu-type",
        "Compute Engine spells it 'nvidia-tesla-t4'",
    ),
    (
        "scheduler-typo",
        {"scheduler_machine_type": "n1-standrd-2"},
        "scheduler-machine-type",
        "did you mean 'n1-standard-2'",
    ),
]


@pytest.mark.parametrize(("gcp", "field", "fix"), cases(DASK_CASES))
def test_dask_gcp_machine_combo(gcp: dict[str, Any], field: str, fix: str) -> None:
    expect(
        ConfigError, lambda: load_stack(overrides={"dask": {"gcp": gcp}}, environ={}), field, fix
    )


def test_ec2_family_without_size() -> None:
    expect(
        ConfigError,
        lambda: load_stack(overrides={"dask": {"ec2": {"worker_instance_type": "g5"}}}, environ={}),
        "dask.ec2.worker-instance-type",
        "e.g. 'g5.xlarge'",
    )
