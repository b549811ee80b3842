"""Shared types of the secret sources: references, lookups and the source outcomes."""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from oxeo_flows.errors import ConfigError

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = [
    "SOURCE_NAMES",
    "Fetched",
    "Lookup",
    "SecretRef",
    "SourceModule",
    "SourceName",
    "SourceNotFound",
    "SourceTransient",
    "parse_secret_ref",
]

SourceName = Literal["env", "prefect", "gcp", "aws"]
SOURCE_NAMES: tuple[SourceName, ...] = ("env", "prefect", "gcp", "aws")
_SCHEMES: dict[str, SourceName] = {
    "env": "env",
    "prefect": "prefect",
    "gcp": "gcp",
    "aws": "aws",
}
_GCP_FULL = re.compile(r"^projects/([^/]+)/secrets/([^/]+)(?:/versions/([^/]+))?$")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A parsed secret reference.

    Attributes:
        source: The source named by the reference (``gcp``, ``aws``, ``prefect``, ``env``), or
            None for a plain name looked up through the stack's ``secrets.sources``.
        name: The secret's name in that source (or the plain name).
        version: The version asked for (``latest`` unless given).
        project: GCP project given in the reference, if any.
        json_key: Field of a JSON secret to return (``aws://NAME#KEY``), if any.
    """

    source: SourceName | None
    name: str
    version: str = "latest"
    project: str | None = None
    json_key: str | None = None

    def __str__(self) -> str:
        if self.source is None:
            return self.name
        text = f"{self.source}://"
        if self.project:
            text += f"{self.project}/"
        text += self.name
        if self.source == "gcp" and self.version != "latest":
            text += f"@{self.version}"
        if self.json_key:
            text += f"#{self.json_key}"
        return text


def parse_secret_ref(text: str, *, version: str = "latest") -> SecretRef:
    """Parse a secret name or reference.

    Accepted forms: a plain ``NAME`` (looked up through the stack's sources),
    ``gcp://[PROJECT/]NAME[@VERSION]`` (also ``gcp://projects/P/secrets/N[/versions/V]``),
    ``aws://NAME[#JSON_KEY]`` (NAME may be an ARN), ``prefect://BLOCK_NAME`` and ``env://VAR``.

    Args:
        text: The name or reference.
        version: Version asked for by the caller; a version inside a ``gcp://`` reference
            must agree with it unless it is ``latest``.

    Returns:
        The parsed reference.

    Raises:
        ConfigError: The reference is malformed; the message shows the accepted forms.
    """
    forms = (
        "a plain NAME, gcp://[PROJECT/]NAME[@VERSION], aws://NAME[#JSON_KEY], "
        "prefect://BLOCK_NAME or env://VAR"
    )
    if not isinstance(text, str) or not text.strip():
        msg = f"secret name must be a non-empty string, got {text!r}; use {forms}"
        raise ConfigError(msg)
    if not isinstance(version, str) or not version.strip():
        msg = f"secret version must be a non-empty string such as 'latest', got {version!r}"
        raise ConfigError(msg)
    text = text.strip()
    if "://" not in text:
        if any(c.isspace() for c in text):
            msg = f"secret name {text!r} contains whitespace; use {forms}"
            raise ConfigError(msg)
        return SecretRef(source=None, name=text, version=version)
    scheme, _, rest = text.partition("://")
    source = _SCHEMES.get(scheme.lower())
    if source is None:
        msg = f"unknown secret source {scheme!r} in {text!r}; use {forms}"
        raise ConfigError(msg)
    if not rest:
        msg = f"secret reference {text!r} has no name; use {forms}"
        raise ConfigError(msg)
    if source == "gcp":
        return _parse_gcp(text, rest, version)
    if source == "aws":
        name, sep, key = rest.partition("#")
        if not name or (sep and not key):
            msg = f"malformed AWS secret reference {text!r}; use aws://NAME or aws://NAME#JSON_KEY"
            raise ConfigError(msg)
        return SecretRef(source="aws", name=name, version=version, json_key=key or None)
    if any(c in rest for c in "/@#") or any(c.isspace() for c in rest):
        msg = f"malformed reference {text!r}: {scheme}://NAME takes a bare name"
        raise ConfigError(msg)
    return SecretRef(source=source, name=rest, version=version)


def _parse_gcp(text: str, rest: str, version: str) -> SecretRef:
    project: str | None
    ref_version: str | None
    full = _GCP_FULL.match(rest)
    if full:
        project, name, ref_version = full.group(1), full.group(2), full.group(3)
    else:
        path, _, ref_version_s = rest.partition("@")
        ref_version = ref_version_s or None
        if "@" in rest and not ref_version_s:
            msg = f"malformed GCP secret reference {text!r}: nothing after '@'"
            raise ConfigError(msg)
        parts = path.split("/")
        if len(parts) == 1:
            project, name = None, parts[0]
        elif len(parts) == 2:
            project, name = parts
        else:
            msg = (
                f"malformed GCP secret reference {text!r}; use gcp://[PROJECT/]NAME[@VERSION] "
                "or gcp://projects/PROJECT/secrets/NAME/versions/VERSION"
            )
            raise ConfigError(msg)
    if not name or (project is not None and not project):
        msg = f"malformed GCP secret reference {text!r}; use gcp://[PROJECT/]NAME[@VERSION]"
        raise ConfigError(msg)
    if ref_version is not None and version not in ("latest", ref_version):
        msg = (
            f"secret reference {text!r} pins version {ref_version!r} but version={version!r} "
            "was also given; keep only one"
        )
        raise ConfigError(msg)
    return SecretRef(
        source="gcp", name=name, version=ref_version or version, project=project or None
    )


@dataclass(frozen=True, slots=True)
class Lookup:
    """One question to one source: the secret ``name`` at ``version`` (+ source options)."""

    source: SourceName
    name: str
    version: str
    project: str | None = None
    json_key: str | None = None
    explicit: bool = False


@dataclass(frozen=True, slots=True)
class Fetched:
    """A source's answer: the value and where it was read (never shown with the value)."""

    value: str
    where: str


class SourceNotFound(Exception):
    """The source does not have the secret: the chain moves on to the next source."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceTransient(Exception):
    """A failure worth retrying (unavailable, throttled, deadline exceeded)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceModule(Protocol):
    """What each source module provides."""

    CACHEABLE: bool

    def identity(self, lookup: Lookup, stack: Stack) -> Hashable:
        """Everything besides (source, name, version) that decides where the value is read."""
        ...

    def fetch(self, lookup: Lookup, stack: Stack) -> Fetched:
        """Read the secret once.

        Raises:
            SourceNotFound: The source does not have it.
            SourceTransient: A retryable failure.
            SecretError: A permanent failure (access denied, integrity, misconfiguration).
        """
        ...
