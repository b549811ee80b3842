"""Pure value checks shared by specs and stack sections, with `Annotated` field types.

Each check raises `ValueError` with a message that shows the expected form; pydantic turns it
into a validation error on the field that declared the type, and `oxeo_flows._model` into a
`ConfigError` naming the key.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator

from oxeo_flows.errors import ConfigError

__all__ = [
    "ImageRef",
    "PipRequirement",
    "VolumeSpec",
    "check_bucket_name",
    "check_folder",
    "check_image",
    "check_pip_requirement",
    "check_volume",
]

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_VOLUME_MODES = frozenset(
    {"ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private", "rprivate"}
    | {"nocopy", "consistent", "cached", "delegated"}
)


def check_image(ref: str) -> str:
    """Validate a container image reference (``[registry/]path[:tag][@sha256:digest]``).

    Args:
        ref: The reference.

    Returns:
        The reference, unchanged.

    Raises:
        ValueError: The reference is malformed; the message shows the expected form.
    """
    first, _, rest = ref.partition("/")
    # Docker reads the first component as a registry only when it has a '.' or a ':' or is
    # 'localhost'; otherwise it is part of the (lowercase) repository path.
    registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if (
        not ref
        or ref != ref.strip()
        or not _IMAGE_RE.match(ref)
        or (not registry and first != first.lower())
    ):
        msg = (
            f"image {ref!r} is not a valid image reference; expected "
            "[REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST] with a lowercase repository, "
            "e.g. 'prefecthq/prefect:3-python3.11'"
        )
        raise ValueError(msg)
    return ref


def check_volume(spec: str) -> str:
    """Validate a Docker volume spec ``SOURCE:/container/path[:MODE[,MODE]]``.

    Args:
        spec: The volume spec.

    Returns:
        The spec, unchanged.

    Raises:
        ValueError: The spec is malformed.
    """
    parts = spec.split(":")
    problem = None
    if len(parts) not in {2, 3} or not all(parts[:2]):
        problem = "must be SOURCE:/container/path[:MODE]"
    elif not parts[1].startswith("/"):
        problem = f"the container path {parts[1]!r} must be absolute"
    elif len(parts) == 3 and not set(parts[2].split(",")) <= _VOLUME_MODES:
        problem = f"unknown mode {parts[2]!r} (use ro or rw)"
    if problem:
        msg = f"volume {spec!r}: {problem}, e.g. '/srv/data:/data:ro'"
        raise ValueError(msg)
    return spec


def check_pip_requirement(spec: str) -> str:
    """Validate one pip requirement (PEP 508), e.g. ``s3fs>=2024.1``.

    Args:
        spec: The requirement.

    Returns:
        The requirement, unchanged.

    Raises:
        ValueError: It is not a valid requirement, or contains whitespace.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(spec)
    except InvalidRequirement as exc:
        msg = f"extra pip package {spec!r} is not a valid requirement: {exc}"
        raise ValueError(msg) from None
    if any(c.isspace() for c in spec):
        # EXTRA_PIP_PACKAGES is split on whitespace by the Prefect image's entrypoint.
        msg = f"extra pip package {spec!r} must not contain spaces (write 's3fs>=2024.1')"
        raise ValueError(msg)
    return spec


def check_bucket_name(name: str, *, where: str = "bucket") -> str:
    """Validate an S3 bucket name against AWS's naming rules.

    Args:
        name: The bucket name.
        where: Where the value came from, for the message.

    Returns:
        The name, unchanged.

    Raises:
        ConfigError: The name breaks a rule; the message says which.
    """
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty"
    elif name.startswith("s3://"):
        problem = "must be a bare bucket name, without 's3://' (put a path in 'folder')"
    elif "/" in name:
        problem = "must not contain '/' (put the path in 'folder')"
    elif not 3 <= len(name) <= 63:
        problem = f"must be 3 to 63 characters long (it has {len(name)})"
    elif not _BUCKET_RE.match(name):
        problem = (
            "may only contain lowercase letters, digits, '.' and '-', and must start and end "
            "with a letter or digit"
        )
    elif ".." in name or ".-" in name or "-." in name:
        problem = "must not contain '..', '.-' or '-.'"
    elif name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        problem = "uses a prefix or suffix that AWS reserves"
    else:
        with contextlib.suppress(ValueError):
            ipaddress.IPv4Address(name)
            problem = "must not be formatted as an IP address"
    if problem:
        msg = f"{where}: S3 bucket name {name!r} {problem}."
        raise ConfigError(msg)
    return name


def check_folder(folder: str | None, *, where: str = "folder") -> str:
    """Validate and normalise a key prefix (``"a/b/"`` → ``"a/b"``; ``None`` → ``""``).

    Args:
        folder: The prefix inside the bucket.
        where: Where the value came from, for the message.

    Returns:
        The prefix without leading or trailing slashes.

    Raises:
        ConfigError: The prefix escapes its folder (``..``), starts with ``/``, has empty
            parts or backslashes.
    """
    if folder is None:
        return ""
    if not isinstance(folder, str):
        msg = f"{where}: folder must be a string, got {type(folder).__name__}"
        raise ConfigError(msg)
    problem = None
    stripped = folder.rstrip("/")
    if folder.startswith("/"):
        problem = "must be relative (no leading '/')"
    elif "\\" in folder:
        problem = "must use '/' as separator, not '\\'"
    elif any(part in {"..", "."} for part in stripped.split("/")):
        problem = "must not contain '.' or '..' parts"
    elif stripped and any(not part for part in stripped.split("/")):
        problem = "must not contain empty parts ('//')"
    elif any(ord(c) < 32 for c in folder):
        problem = "must not contain control characters"
    elif len(folder.encode()) > 512:
        problem = "is too long (S3 keys are at most 1024 bytes)"
    if problem:
        msg = f"{where}: folder {folder!r} {problem}."
        raise ConfigError(msg)
    return stripped


ImageRef = Annotated[str, AfterValidator(check_image)]
"""A container image reference, validated by `check_image`."""
VolumeSpec = Annotated[str, AfterValidator(check_volume)]
"""A Docker volume spec, validated by `check_volume`."""
PipRequirement = Annotated[str, AfterValidator(check_pip_requirement)]
"""A pip requirement, validated by `check_pip_requirement`."""
