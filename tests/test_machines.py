"""The machine/accelerator table: every refusal says what to write instead."""

from __future__ import annotations

import pytest

from oxeo_flows.machines import (
    FIXED_GPUS,
    accelerator_name,
    check_ec2_instance,
    check_machine,
    ec2_gpu_count,
    implied_accelerator,
    machine_types,
)

VALID = [
    # (machine_type, accelerator_type, count, platform)
    ("n1-standard-8", None, None, "vertex"),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 1, "vertex"),
    ("n1-standard-8", "NVIDIA_TESLA_T4", None, "vertex"),
    ("n1-standard-16", "NVIDIA_TESLA_T4", 2, "vertex"),
    ("n1-standard-96", "NVIDIA_TESLA_T4", 4, "vertex"),
    ("n1-highmem-8", "NVIDIA_TESLA_V100", 1, "vertex"),
    ("n1-standard-96", "NVIDIA_TESLA_V100", 8, "vertex"),
    ("n1-highcpu-16", "NVIDIA_TESLA_P100", 1, "vertex"),
    ("n1-standard-4", "NVIDIA_TESLA_P4", 2, "vertex"),
    ("n1-standard-8", "nvidia-tesla-t4", 1, "gce"),
    ("n1-custom-4-16384", "nvidia-tesla-t4", 1, "gce"),
    ("custom-8-30720", "nvidia-tesla-v100", 1, "gce"),
    ("e2-custom-8-32768", None, None, "gce"),
    ("n2-custom-36-147456", None, None, "gce"),
    ("n1-custom-2-26624-ext", None, None, "gce"),
    ("g2-standard-8", None, None, "vertex"),
    ("g2-standard-8", "NVIDIA_L4", 1, "vertex"),
    ("g2-standard-24", "NVIDIA_L4", 2, "vertex"),
    ("g2-standard-96", "nvidia-l4", 8, "gce"),
    ("a2-highgpu-1g", None, None, "vertex"),
    ("a2-highgpu-4g", "NVIDIA_TESLA_A100", 4, "vertex"),
    ("a2-megagpu-16g", "NVIDIA_TESLA_A100", 16, "vertex"),
    ("a2-ultragpu-8g", "NVIDIA_A100_80GB", 8, "vertex"),
    ("a3-highgpu-8g", "NVIDIA_H100_80GB", 8, "vertex"),
    ("a3-megagpu-8g", None, 8, "vertex"),
    ("e2-standard-4", None, None, "vertex"),
    ("e2-micro", None, None, "gce"),
    ("n2-highmem-16", None, None, "vertex"),
    ("n2d-standard-224", None, None, "gce"),
    ("c2-standard-60", None, None, "vertex"),
    ("c3-highcpu-22", None, None, "gce"),
    ("t2d-standard-60", None, None, "gce"),
    ("n1-standard-8", None, 0, "vertex"),
]


@pytest.mark.parametrize(("machine", "accelerator", "count", "platform"), VALID)
def test_valid_combinations_are_accepted(machine, accelerator, count, platform) -> None:
    check_machine(machine, accelerator, count, platform=platform)


REFUSED = [
    # (machine_type, accelerator_type, count, platform, fragments the message must hold)
    ("n1-standard-8", "NVIDIA_L4", 1, "vertex", ["NVIDIA_L4", "g2-standard-4", "leave"]),
    ("n1-standard-8", "nvidia-l4", 1, "gce", ["for 1 x nvidia-l4 use g2-standard-4", "leave"]),
    ("g2-standard-8", "NVIDIA_TESLA_T4", 1, "vertex", ["comes with 1 x NVIDIA_L4", "n1"]),
    ("g2-standard-8", "NVIDIA_L4", 2, "vertex", ["comes with 1 x NVIDIA_L4", "g2-standard-24"]),
    ("g2-standard-8", None, 2, "vertex", ["comes with 1 NVIDIA_L4", "g2-standard-24"]),
    ("e2-standard-8", "NVIDIA_TESLA_T4", 1, "vertex", ["takes no GPUs", "n1-standard-8"]),
    ("n2-standard-8", "NVIDIA_TESLA_V100", 1, "vertex", ["(n2) takes no GPUs", "n1"]),
    ("c2-standard-8", "nvidia-tesla-t4", 1, "gce", ["takes no GPUs", "n1"]),
    ("t2d-standard-8", "nvidia-tesla-p4", 1, "gce", ["takes no GPUs", "n1"]),
    ("a2-highgpu-4g", "NVIDIA_TESLA_A100", 3, "vertex", ["not 3 x", "a2-highgpu-4g"]),
    ("a2-highgpu-2g", None, 3, "vertex", ["comes with 2", "a2-highgpu-4g"]),
    ("n1-standard-8", "NVIDIA_TESLA_A100", 3, "vertex", ["a2-highgpu-4g", "leave"]),
    ("n1-standard-8", "NVIDIA_TESLA_A100", 1, "vertex", ["a2-highgpu-1g"]),
    ("n1-standard-8", "NVIDIA_H100_80GB", 8, "vertex", ["a3-highgpu-8g"]),
    ("a2-highgpu-1g", "NVIDIA_H100_80GB", 1, "vertex", ["comes with 1 x NVIDIA_TESLA_A100"]),
    ("a3-highgpu-8g", "NVIDIA_H100_80GB", 4, "vertex", ["a3-highgpu-4g"]),
    ("a2-megagpu-16g", None, 32, "vertex", ["comes with 16", "leave"]),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 8, "vertex", ["counts 1/2/4"]),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 3, "vertex", ["counts 1/2/4"]),
    ("n1-standard-8", "NVIDIA_TESLA_P100", 8, "vertex", ["counts 1/2/4"]),
    ("n1-standard-8", "NVIDIA_TESLA_V100", 16, "vertex", ["counts 1/2/4/8"]),
    ("n1-standard-64", "NVIDIA_TESLA_T4", 1, "vertex", ["at most 48 vCPUs", "4 x NVIDIA_TESLA_T4"]),
    ("n1-standard-16", "NVIDIA_TESLA_V100", 1, "vertex", ["at most 12", "2 x NVIDIA_TESLA_V100"]),
    ("n1-standard-32", "NVIDIA_TESLA_P4", 1, "vertex", ["at most 24", "2 x NVIDIA_TESLA_P4"]),
    ("n1-standard-32", "NVIDIA_TESLA_P100", 1, "vertex", ["at most 16", "2 x NVIDIA_TESLA_P100"]),
    ("n1-standard-8", "nvidia-tesla-t4", 1, "vertex", ["Vertex AI spells it 'NVIDIA_TESLA_T4'"]),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 1, "gce", ["Compute Engine spells it 'nvidia-tesla-t4'"]),
    ("n1-standard-8", "NVIDIA_TESLA_T5", 1, "vertex", ["did you mean", "NVIDIA_TESLA_T4"]),
    ("n1-standard-8", "NVIDIA_TESLA_K80", 1, "vertex", ["retired", "T4 or L4"]),
    ("n1-standard-8", None, 2, "vertex", ["without an accelerator type", "NVIDIA_TESLA_T4"]),
    ("n1-standard-8", "NVIDIA_TESLA_T4", 0, "vertex", ["leave both out"]),
    ("n1-standard-8", "NVIDIA_TESLA_T4", -1, "vertex", ["whole number >= 0"]),
    ("n1-standrd-8", None, None, "vertex", ["did you mean", "'n1-standard-8'"]),
    ("n1-standard-7", None, None, "vertex", ["did you mean", "n1-standard-"]),
    ("e2-standart-4", None, None, "gce", ["did you mean", "'e2-standard-4'"]),
    ("g2-standard-6", None, None, "vertex", ["did you mean", "g2-standard-"]),
    ("a2-highgpu-3g", None, None, "vertex", ["did you mean", "a2-highgpu-"]),
    ("n1_standard_8", None, None, "vertex", ["did you mean", "'n1-standard-8'"]),
    ("N1-STANDARD-8", None, None, "vertex", ["unknown machine type"]),
    ("", None, None, "vertex", ["non-empty string", "n1-standard-8"]),
    ("e2-micro", None, None, "vertex", ["shared-core", "e2-standard-4"]),
    ("n1-custom-4-16384", None, None, "vertex", ["predefined machine types", "n1-standard-4"]),
    ("n1-custom-3-12288", None, None, "gce", ["1 or an even number"]),
    ("n1-custom-4-16000", None, None, "gce", ["multiple of 256", "n1-custom-4-16128"]),
    ("n1-custom-4-40960", None, None, "gce", ["0.9-6.5 GB per vCPU", "-ext"]),
    ("e2-custom-4-1024", None, None, "gce", ["0.5-8.0 GB per vCPU", "2048-32768 MB"]),
    ("e2-custom-64-65536", None, None, "gce", ["an even number from 2 to 32"]),
    ("n2d-custom-24-98304", None, None, "gce", ["multiple of 16"]),
    ("n1-standard-8", "NVIDIA_TESLA_T4", True, "vertex", ["whole number >= 0"]),
]


@pytest.mark.parametrize(("machine", "accelerator", "count", "platform", "fix"), REFUSED)
def test_refusals_name_the_fix(machine, accelerator, count, platform, fix) -> None:
    with pytest.raises(ValueError) as info:
        check_machine(machine, accelerator, count, platform=platform)
    for fragment in fix:
        assert fragment in str(info.value)


def test_bad_platform_is_refused() -> None:
    with pytest.raises(ValueError, match="'vertex' or 'gce'"):
        check_machine("n1-standard-8", platform="aws")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("g2-standard-4", ("NVIDIA_L4", 1)),
        ("g2-standard-12", ("NVIDIA_L4", 1)),
        ("g2-standard-16", ("NVIDIA_L4", 1)),
        ("g2-standard-24", ("NVIDIA_L4", 2)),
        ("g2-standard-32", ("NVIDIA_L4", 1)),
        ("g2-standard-48", ("NVIDIA_L4", 4)),
        ("g2-standard-96", ("NVIDIA_L4", 8)),
        ("a2-highgpu-1g", ("NVIDIA_TESLA_A100", 1)),
        ("a2-highgpu-8g", ("NVIDIA_TESLA_A100", 8)),
        ("a2-megagpu-16g", ("NVIDIA_TESLA_A100", 16)),
        ("a2-ultragpu-2g", ("NVIDIA_A100_80GB", 2)),
        ("a3-highgpu-8g", ("NVIDIA_H100_80GB", 8)),
        ("a3-megagpu-8g", ("NVIDIA_H100_MEGA_80GB", 8)),
        ("n1-standard-8", None),
        ("e2-standard-4", None),
    ],
)
def test_implied_accelerators(machine, expected) -> None:
    assert implied_accelerator(machine) == expected
    if expected is not None:
        gce = implied_accelerator(machine, platform="gce")
        assert gce == (expected[0].lower().replace("_", "-"), expected[1])


def test_every_fixed_machine_type_accepts_its_own_gpus_in_both_forms() -> None:
    for machine in FIXED_GPUS:
        for platform in ("vertex", "gce"):
            implied = implied_accelerator(machine, platform=platform)
            assert implied is not None
            check_machine(machine, *implied, platform=platform)
            check_machine(machine, platform=platform)
    assert "n1-standard-8" in machine_types()


@pytest.mark.parametrize(
    ("name", "vertex", "gce"),
    [
        ("nvidia-tesla-t4", "NVIDIA_TESLA_T4", "nvidia-tesla-t4"),
        ("NVIDIA_A100_80GB", "NVIDIA_A100_80GB", "nvidia-a100-80gb"),
        (" nvidia-l4 ", "NVIDIA_L4", "nvidia-l4"),
        ("NVIDIA_H100_MEGA_80GB", "NVIDIA_H100_MEGA_80GB", "nvidia-h100-mega-80gb"),
    ],
)
def test_accelerator_name_forms(name, vertex, gce) -> None:
    assert accelerator_name(name, platform="vertex") == vertex
    assert accelerator_name(name, platform="gce") == gce


EC2_VALID = [
    ("g4dn.xlarge", 1),
    ("g4dn.12xlarge", 4),
    ("g4dn.metal", 8),
    ("g5.48xlarge", 8),
    ("g6.xlarge", 1),
    ("p3.8xlarge", 4),
    ("p4d.24xlarge", 8),
    ("p5.48xlarge", 8),
    ("m5.xlarge", None),
    ("t3.medium", 0),
]


@pytest.mark.parametrize(("instance", "gpus"), EC2_VALID)
def test_ec2_instance_types_accepted(instance, gpus) -> None:
    check_ec2_instance(instance, gpus=gpus)


EC2_REFUSED = [
    ("m5.xlarge", 1, ["has no GPU", "g4dn.xlarge"]),
    ("c6i.large", 2, ["has no GPU", "g4dn.12xlarge"]),
    ("g4dn.xlarge", 2, ["has 1 GPU,", "g4dn.12xlarge"]),
    ("g5.12xlarge", 8, ["has 4 GPUs", "g5.48xlarge"]),
    ("p3.2xlarge", 4, ["has 1 GPU", "p3.8xlarge"]),
    ("g4dn.3xlarge", None, ["did you mean", "g4dn."]),
    ("g5.huge", 1, ["g5 sizes", "xlarge"]),
    ("p5.24xlarge", 8, ["did you mean", "p5.48xlarge"]),
    ("g5xlarge", 1, ["FAMILY.SIZE", "g5.xlarge"]),
    ("p4d.24xlarge", 16, ["no EC2 type in the table"]),
    ("g6.xlarge", -1, ["whole number >= 0"]),
]


@pytest.mark.parametrize(("instance", "gpus", "fix"), EC2_REFUSED)
def test_ec2_refusals_name_the_fix(instance, gpus, fix) -> None:
    with pytest.raises(ValueError) as info:
        check_ec2_instance(instance, gpus=gpus)
    for fragment in fix:
        assert fragment in str(info.value)


def test_ec2_gpu_count() -> None:
    assert ec2_gpu_count("g4dn.12xlarge") == 4
    assert ec2_gpu_count("m5.large") == 0
    assert ec2_gpu_count("nonsense") == 0
