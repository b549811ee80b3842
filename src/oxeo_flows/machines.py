"""Machine types and the GPUs they take: GCE / Vertex AI machine families and EC2 GPU types.

A pure table and checks (no I/O, no SDK import), so that a machine/accelerator combination
the cloud would refuse minutes later, after a job was queued or a VM requested, is refused
when the spec is built, with the fix in the message.

Sources (read 2025; GPU offerings change, so an unknown name is refused with the closest
known names rather than silently accepted):

- Compute Engine "GPU machine types" (cloud.google.com/compute/docs/gpus): N1 takes
  T4 / P4 / P100 in 1, 2 or 4 and V100 in 1, 2, 4 or 8, each count with a vCPU limit; A2, A3,
  A4 and G2 machine types come with a fixed number of GPUs of one model.
- Compute Engine "Machine families resource and comparison guide" and "Create a VM with a
  custom machine type" (cloud.google.com/compute/docs/machine-resource,
  .../instances/creating-instance-with-custom-machine-type): presets and custom types.
- Vertex AI "Configure compute resources for custom training"
  (cloud.google.com/vertex-ai/docs/training/configure-compute): Vertex takes predefined
  machine types only, accelerator names as ``AcceleratorType`` enum names.
- Amazon EC2 "Accelerated computing instances" (docs.aws.amazon.com/ec2/latest/instancetypes/
  ac.html): GPUs per size of g4dn, g5, g6, p3, p3dn, p4d, p5.

Accelerator names: Vertex AI uses ``NVIDIA_TESLA_T4``, Compute Engine ``nvidia-tesla-t4``
(the same words, upper-case with ``_`` versus lower-case with ``-``). `accelerator_name`
converts between them.

Example:
    ```python
    from oxeo_flows.machines import check_machine

    check_machine("n1-standard-8", "NVIDIA_TESLA_T4", 1)   # fine
    check_machine("g2-standard-8")                         # fine: 1 L4 comes with it
    check_machine("n1-standard-8", "NVIDIA_L4", 1)         # ValueError: L4 needs g2-...
    ```
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

__all__ = [
    "ACCELERATORS",
    "EC2_GPU_TYPES",
    "FIXED_GPUS",
    "N1_GPU_LIMITS",
    "Platform",
    "accelerator_name",
    "check_ec2_instance",
    "check_machine",
    "ec2_gpu_count",
    "implied_accelerator",
    "machine_types",
]

Platform = Literal["vertex", "gce"]

# Canonical (GCE) accelerator names -> short display name.
ACCELERATORS: dict[str, str] = {
    "nvidia-tesla-t4": "T4",
    "nvidia-tesla-p4": "P4",
    "nvidia-tesla-v100": "V100",
    "nvidia-tesla-p100": "P100",
    "nvidia-tesla-a100": "A100 40GB",
    "nvidia-a100-80gb": "A100 80GB",
    "nvidia-h100-80gb": "H100 80GB",
    "nvidia-h100-mega-80gb": "H100 Mega 80GB",
    "nvidia-h200-141gb": "H200 141GB",
    "nvidia-b200": "B200",
    "nvidia-l4": "L4",
}
_RETIRED = {"nvidia-tesla-k80": "K80 reached end of support in 2024"}

# N1: GPU -> {count: max vCPUs of the N1 machine it attaches to}.
N1_GPU_LIMITS: dict[str, dict[int, int]] = {
    "nvidia-tesla-t4": {1: 48, 2: 48, 4: 96},
    "nvidia-tesla-p4": {1: 24, 2: 48, 4: 96},
    "nvidia-tesla-p100": {1: 16, 2: 32, 4: 96},
    "nvidia-tesla-v100": {1: 12, 2: 24, 4: 48, 8: 96},
}

# Accelerator-optimized machine types: machine type -> (GPU, count), attached automatically.
FIXED_GPUS: dict[str, tuple[str, int]] = {
    **{f"a2-highgpu-{n}g": ("nvidia-tesla-a100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("nvidia-tesla-a100", 16),
    **{f"a2-ultragpu-{n}g": ("nvidia-a100-80gb", n) for n in (1, 2, 4, 8)},
    **{f"a3-highgpu-{n}g": ("nvidia-h100-80gb", n) for n in (1, 2, 4, 8)},
    "a3-edgegpu-8g": ("nvidia-h100-80gb", 8),
    "a3-megagpu-8g": ("nvidia-h100-mega-80gb", 8),
    "a3-ultragpu-8g": ("nvidia-h200-141gb", 8),
    "a4-highgpu-8g": ("nvidia-b200", 8),
    "g2-standard-4": ("nvidia-l4", 1),
    "g2-standard-8": ("nvidia-l4", 1),
    "g2-standard-12": ("nvidia-l4", 1),
    "g2-standard-16": ("nvidia-l4", 1),
    "g2-standard-24": ("nvidia-l4", 2),
    "g2-standard-32": ("nvidia-l4", 1),
    "g2-standard-48": ("nvidia-l4", 4),
    "g2-standard-96": ("nvidia-l4", 8),
}

# General-purpose and compute-optimized presets: family -> kind -> vCPU counts.
_PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    "n1": {
        "standard": (1, 2, 4, 8, 16, 32, 64, 96),
        "highmem": (2, 4, 8, 16, 32, 64, 96),
        "highcpu": (2, 4, 8, 16, 32, 64, 96),
    },
    "e2": {
        "standard": (2, 4, 8, 16, 32),
        "highmem": (2, 4, 8, 16),
        "highcpu": (2, 4, 8, 16, 32),
    },
    "n2": {
        "standard": (2, 4, 8, 16, 32, 48, 64, 80, 96, 128),
        "highmem": (2, 4, 8, 16, 32, 48, 64, 80, 96, 128),
        "highcpu": (2, 4, 8, 16, 32, 48, 64, 80, 96),
    },
    "n2d": {
        "standard": (2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224),
        "highmem": (2, 4, 8, 16, 32, 48, 64, 80, 96),
        "highcpu": (2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224),
    },
    "c2": {"standard": (4, 8, 16, 30, 60)},
    "c2d": {
        "standard": (2, 4, 8, 16, 32, 56, 112),
        "highmem": (2, 4, 8, 16, 32, 56, 112),
        "highcpu": (2, 4, 8, 16, 32, 56, 112),
    },
    "c3": {
        "standard": (4, 8, 22, 44, 88, 176),
        "highmem": (4, 8, 22, 44, 88, 176),
        "highcpu": (4, 8, 22, 44, 88, 176),
    },
    "t2d": {"standard": (1, 2, 4, 8, 16, 32, 48, 60)},
}
_SHARED_CORE = ("e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small")
# Custom types: family -> (vCPU rule text, allowed vCPUs, GB per vCPU min, max).
_CUSTOM: dict[str, tuple[str, frozenset[int], float, float]] = {
    "n1": ("1 or an even number up to 96", frozenset({1, *range(2, 97, 2)}), 0.9, 6.5),
    "e2": ("an even number from 2 to 32", frozenset(range(2, 33, 2)), 0.5, 8.0),
    "n2": (
        "an even number up to 32, then a multiple of 4 up to 128",
        frozenset({*range(2, 33, 2), *range(36, 129, 4)}),
        0.5,
        8.0,
    ),
    "n2d": (
        "2, 4, 8, 16, or a multiple of 16 up to 96",
        frozenset({2, 4, 8, 16, 32, 48, 64, 80, 96}),
        0.5,
        8.0,
    ),
}
_CUSTOM_RE = re.compile(r"^(?:(n1|e2|n2|n2d)-)?custom-(\d+)-(\d+)(-ext)?$")


def machine_types() -> list[str]:
    """Every predefined machine type in the table (custom types are a pattern)."""
    names = [
        f"{family}-{kind}-{n}"
        for family, kinds in _PRESETS.items()
        for kind, sizes in kinds.items()
        for n in sizes
    ]
    return sorted([*names, *_SHARED_CORE, *FIXED_GPUS])


_ALL = frozenset(machine_types())


def _suggest(name: str, known: list[str] | frozenset[str], what: str) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}?"
    return f"see the {what} in oxeo_flows.machines"


def _platform(platform: str) -> Platform:
    if platform not in ("vertex", "gce"):
        msg = f"platform must be 'vertex' or 'gce', got {platform!r}"
        raise ValueError(msg)
    return platform  # type: ignore[return-value]


def _form(canonical: str, platform: Platform) -> str:
    return canonical.upper().replace("-", "_") if platform == "vertex" else canonical


def accelerator_name(name: str, *, platform: Platform = "vertex", strict: bool = False) -> str:
    """The accelerator name as ``platform`` spells it (``NVIDIA_TESLA_T4`` / ``nvidia-tesla-t4``).

    Args:
        name: An accelerator name in either form.
        platform: ``vertex`` or ``gce``.
        strict: Refuse the other platform's form instead of converting it.

    Returns:
        The name in the platform's form.

    Raises:
        ValueError: Unknown or retired accelerator, or (``strict``) the other form; the message
            names the form to write.
    """
    platform = _platform(platform)
    canonical = name.strip().lower().replace("_", "-")
    if canonical in _RETIRED:
        msg = f"accelerator {name!r} is retired ({_RETIRED[canonical]}); use T4 or L4 instead"
        raise ValueError(msg)
    if canonical not in ACCELERATORS:
        known = [_form(c, platform) for c in ACCELERATORS]
        hint = _suggest(_form(canonical, platform), known, "ACCELERATORS")
        msg = f"unknown accelerator {name!r}; {hint}"
        raise ValueError(msg)
    wanted = _form(canonical, platform)
    if strict and name != wanted:
        where = "Vertex AI" if platform == "vertex" else "Compute Engine"
        msg = f"accelerator {name!r}: {where} spells it {wanted!r}"
        raise ValueError(msg)
    return wanted


def implied_accelerator(
    machine_type: str, *, platform: Platform = "vertex"
) -> tuple[str, int] | None:
    """The GPUs that come with ``machine_type`` (a2, a3, a4, g2), or None.

    Args:
        machine_type: A machine type name.
        platform: Spell the accelerator for ``vertex`` or ``gce``.

    Returns:
        (accelerator name, count), or None for a machine type without built-in GPUs.
    """
    fixed = FIXED_GPUS.get(machine_type)
    if fixed is None:
        return None
    return _form(fixed[0], _platform(platform)), fixed[1]


def _vcpus(machine_type: str) -> int | None:
    custom = _CUSTOM_RE.match(machine_type)
    if custom:
        return int(custom.group(2))
    last = machine_type.rsplit("-", 1)[-1]
    return int(last) if last.isdigit() else None


def _check_custom(machine_type: str, platform: Platform) -> None:
    match = _CUSTOM_RE.match(machine_type)
    assert match is not None
    family = match.group(1) or "n1"
    vcpus, memory_mb, extended = int(match.group(2)), int(match.group(3)), bool(match.group(4))
    if platform == "vertex":
        msg = (
            f"machine type {machine_type!r}: Vertex AI custom jobs take predefined machine "
            f"types only; pick a preset such as '{family}-standard-{max(4, vcpus)}' or "
            f"'{family}-highmem-{max(4, vcpus)}'"
        )
        raise ValueError(msg)
    rule, allowed, low, high = _CUSTOM[family]
    if vcpus not in allowed:
        msg = f"machine type {machine_type!r}: {family} custom types take {rule} vCPUs"
        raise ValueError(msg)
    if memory_mb % 256:
        fixed = (memory_mb // 256 + 1) * 256
        msg = (
            f"machine type {machine_type!r}: custom memory must be a multiple of 256 MB; "
            f"use {family}-custom-{vcpus}-{fixed}"
        )
        raise ValueError(msg)
    per_cpu = memory_mb / 1024 / vcpus
    if per_cpu < low or (per_cpu > high and not extended):
        lo_mb = int(-(-low * vcpus * 1024 // 256) * 256)
        hi_mb = int(high * vcpus * 1024 // 256 * 256)
        msg = (
            f"machine type {machine_type!r}: {family} custom types take {low}-{high} GB per "
            f"vCPU, i.e. {lo_mb}-{hi_mb} MB for {vcpus} vCPUs"
            + ("; add '-ext' for extended memory" if per_cpu > high else "")
        )
        raise ValueError(msg)


def _check_name(machine_type: str, platform: Platform) -> None:
    if _CUSTOM_RE.match(machine_type):
        _check_custom(machine_type, platform)
        return
    if machine_type not in _ALL:
        msg = f"unknown machine type {machine_type!r}; {_suggest(machine_type, _ALL, 'table')}"
        raise ValueError(msg)
    if platform == "vertex" and machine_type in _SHARED_CORE:
        msg = (
            f"machine type {machine_type!r} is shared-core, which Vertex AI custom jobs do "
            "not take; use e2-standard-4 or larger"
        )
        raise ValueError(msg)


def _fixed_fix(gpu: str, count: int | None, platform: Platform) -> str:
    name = _form(gpu, platform)
    types = [(n, m) for m, (g, n) in FIXED_GPUS.items() if g == gpu]  # table order
    counts = sorted({n for n, _ in types})
    want = count or 1
    bigger = [n for n in counts if n >= want]
    if bigger:
        n = bigger[0]
        picks = [m for k, m in types if k == n]
        fix = f"for {want} x {name} use {' or '.join(picks)} ({n} attached)"
    else:
        fix = f"no machine type comes with {want} x {name}"
    return (
        f"{fix}; {name} comes only built into machine types ({'/'.join(map(str, counts))} "
        "GPUs), so leave accelerator_type/count out"
    )


def check_machine(
    machine_type: str,
    accelerator_type: str | None = None,
    accelerator_count: int | None = None,
    *,
    platform: Platform = "vertex",
) -> None:
    """Check a machine type and the GPUs asked for it, as Vertex AI or Compute Engine would.

    - The machine type must be a known preset (``n1-standard-8``) or, on Compute Engine, a
      valid custom type (``n1-custom-4-16384``, ``e2-custom-8-32768``, ``-ext``);
      a typo gets "did you mean".
    - a2 / a3 / a4 / g2 come with their GPUs: leave the accelerator out, or give exactly the
      built-in model and count.
    - n1 takes T4, P4, P100 (1, 2, 4) and V100 (1, 2, 4, 8), each count up to a vCPU limit.
    - Other families (e2, n2, n2d, c2, c2d, c3, t2d) take no GPUs.
    - The accelerator name must be the platform's spelling (``NVIDIA_TESLA_T4`` on Vertex,
      ``nvidia-tesla-t4`` on GCE).

    Args:
        machine_type: Machine type name.
        accelerator_type: Accelerator asked for, or None.
        accelerator_count: Number of accelerators, or None (1 when a type is given).
        platform: ``vertex`` (Vertex AI custom jobs) or ``gce`` (Compute Engine VMs).

    Raises:
        ValueError: The combination is refused; the message says what to write instead.
    """
    platform = _platform(platform)
    if not isinstance(machine_type, str) or not machine_type:
        msg = (
            f"machine type must be a non-empty string such as 'n1-standard-8', got {machine_type!r}"
        )
        raise ValueError(msg)
    _check_name(machine_type, platform)
    if accelerator_count is not None and (
        isinstance(accelerator_count, bool)
        or not isinstance(accelerator_count, int)
        or accelerator_count < 0
    ):
        msg = f"accelerator count must be a whole number >= 0, got {accelerator_count!r}"
        raise ValueError(msg)
    fixed = FIXED_GPUS.get(machine_type)
    if accelerator_type is None:
        if accelerator_count and (fixed is None or accelerator_count != fixed[1]):
            if fixed is not None:
                msg = (
                    f"machine type {machine_type!r} comes with {fixed[1]} "
                    f"{_form(fixed[0], platform)}, not {accelerator_count}; "
                    + _fixed_fix(fixed[0], accelerator_count, platform)
                )
            else:
                msg = (
                    f"accelerator count {accelerator_count} given without an accelerator "
                    f"type; set accelerator_type (e.g. {_form('nvidia-tesla-t4', platform)!r}) "
                    "or leave the count out"
                )
            raise ValueError(msg)
        return
    gpu = accelerator_name(accelerator_type, platform=platform, strict=True).lower()
    gpu = gpu.replace("_", "-")
    count = 1 if accelerator_count is None else accelerator_count
    if count == 0:
        msg = "accelerator count 0 with an accelerator type; leave both out for no GPU"
        raise ValueError(msg)
    family = machine_type.split("-", 1)[0] if not machine_type.startswith("custom-") else "n1"
    if fixed is not None:
        if gpu != fixed[0] or (accelerator_count is not None and count != fixed[1]):
            got = f"{count} x {_form(gpu, platform)}"
            msg = (
                f"machine type {machine_type!r} comes with {fixed[1]} x "
                f"{_form(fixed[0], platform)} attached, not {got}; leave accelerator_type and "
                f"accelerator_count out"
                + (
                    ", or " + _fixed_fix(gpu, count, platform)
                    if gpu not in N1_GPU_LIMITS
                    else f", or use an n1 machine type for {_form(gpu, platform)}"
                )
            )
            raise ValueError(msg)
        return
    if gpu not in N1_GPU_LIMITS:
        msg = f"{_form(gpu, platform)} does not attach to {machine_type!r}: " + _fixed_fix(
            gpu, count, platform
        )
        raise ValueError(msg)
    if family != "n1":
        msg = (
            f"machine type {machine_type!r} ({family}) takes no GPUs; {_form(gpu, platform)} "
            f"attaches only to n1 machine types, e.g. 'n1-standard-8'"
        )
        raise ValueError(msg)
    if machine_type in _SHARED_CORE:
        msg = f"{machine_type!r} is shared-core and takes no GPUs; use e.g. 'n1-standard-4'"
        raise ValueError(msg)
    limits = N1_GPU_LIMITS[gpu]
    name = _form(gpu, platform)
    if count not in limits:
        msg = (
            f"{count} x {name} is not offered; n1 takes {name} in counts "
            f"{'/'.join(map(str, limits))}"
        )
        raise ValueError(msg)
    vcpus = _vcpus(machine_type) or 0
    if vcpus > limits[count]:
        more = [n for n, cap in limits.items() if cap >= vcpus]
        fix = f"use {more[0]} x {name}" if more else f"use at most {max(limits.values())} vCPUs"
        msg = (
            f"{count} x {name} attaches to n1 machines of at most {limits[count]} vCPUs, "
            f"but {machine_type!r} has {vcpus}; {fix} or a smaller n1 machine type"
        )
        raise ValueError(msg)


# ----------------------------------------------------------------------------- EC2

# GPU instance families: family -> size -> GPUs (and the GPU model).
_G_SIZES = {  # g5 and g6 share their sizes and GPU counts
    "xlarge": 1,
    "2xlarge": 1,
    "4xlarge": 1,
    "8xlarge": 1,
    "16xlarge": 1,
    "12xlarge": 4,
    "24xlarge": 4,
    "48xlarge": 8,
}
EC2_GPU_TYPES: dict[str, tuple[str, dict[str, int]]] = {
    "g4dn": (
        "T4",
        {**{k: v for k, v in _G_SIZES.items() if k not in ("24xlarge", "48xlarge")}, "metal": 8},
    ),
    "g5": ("A10G", dict(_G_SIZES)),
    "g6": ("L4", dict(_G_SIZES)),
    "p3": ("V100", {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}),
    "p3dn": ("V100", {"24xlarge": 8}),
    "p4d": ("A100", {"24xlarge": 8}),
    "p5": ("H100", {"48xlarge": 8}),
}
_EC2_RE = re.compile(r"^([a-z][a-z0-9-]*)\.([a-z0-9]+)$")
#: The sizes EC2 instance families come in (``metal-24xl`` style sizes included).
_EC2_SIZE_RE = re.compile(r"^(nano|micro|small|medium|large|\d*xlarge|metal(-\d+xl)?)$")
_EC2_SIZES = ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "metal"]
_EC2_GPU_NAMES = sorted(f"{f}.{s}" for f, (_, sizes) in EC2_GPU_TYPES.items() for s in sizes)


def ec2_gpu_count(instance_type: str) -> int:
    """GPUs of an EC2 instance type from the table (0 for other types)."""
    match = _EC2_RE.match(instance_type)
    if not match:
        return 0
    family = EC2_GPU_TYPES.get(match.group(1))
    return 0 if family is None else family[1].get(match.group(2), 0)


def check_ec2_instance(instance_type: str, *, gpus: int | None = None) -> None:
    """Check an EC2 instance type (e.g. ``worker_instance_type``) and the GPUs it must have.

    Args:
        instance_type: An instance type such as ``g5.xlarge``.
        gpus: GPUs each instance must have (e.g. GPUs per Dask worker), or None/0 for none.

    Raises:
        ValueError: A malformed name, an unknown size of a GPU family, or fewer GPUs than
            asked; the message names instance types that fit.
    """
    match = _EC2_RE.match(instance_type) if isinstance(instance_type, str) else None
    if match is None:
        msg = (
            f"EC2 instance type {instance_type!r} is not of the form FAMILY.SIZE, e.g. 'g5.xlarge'"
        )
        raise ValueError(msg)
    family_name, size = match.groups()
    family = EC2_GPU_TYPES.get(family_name)
    if family is not None and size not in family[1]:
        msg = (
            f"unknown EC2 instance type {instance_type!r}; "
            f"{_suggest(instance_type, _EC2_GPU_NAMES, 'EC2_GPU_TYPES')} "
            f"({family_name} sizes: {', '.join(family[1])})"
        )
        raise ValueError(msg)
    if family is None and not _EC2_SIZE_RE.match(size):
        import difflib

        close = difflib.get_close_matches(size, _EC2_SIZES, n=1)
        hint = f"did you mean '{family_name}.{close[0]}'?" if close else "e.g. 'm5.xlarge'"
        msg = (
            f"EC2 instance type {instance_type!r} has no size {size!r} ({hint}); sizes are "
            "nano, micro, small, medium, large, xlarge, 2xlarge, ... 48xlarge, metal"
        )
        raise ValueError(msg)
    if gpus is None or gpus == 0:
        return
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        msg = f"GPU count must be a whole number >= 0, got {gpus!r}"
        raise ValueError(msg)
    have = ec2_gpu_count(instance_type)
    if have >= gpus:
        return
    fitting = sorted(  # fewest GPUs first; the table order (smallest size first) breaks ties
        ((n, f"{f}.{s}") for f, (_, sizes) in EC2_GPU_TYPES.items() for s, n in sizes.items()),
        key=lambda item: item[0],
    )
    options = [name for n, name in fitting if n >= gpus]
    same = [o for o in options if o.split(".")[0] == family_name]
    pick = (same or options)[:3]
    what = "has no GPU" if have == 0 else f"has {have} GPU{'s' if have > 1 else ''}"
    fix = f"use {' or '.join(pick)}" if pick else "no EC2 type in the table has that many"
    msg = f"EC2 instance type {instance_type!r} {what}, but {gpus} were asked for; {fix}"
    raise ValueError(msg)
