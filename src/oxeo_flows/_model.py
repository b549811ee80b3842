"""Base model for stack sections and specs, and the translation of pydantic errors.

Every model here is strict about unknown keys and accepts both the Python field name
(``project_number``) and the TOML spelling (``project-number``). Validation failures become
a `ConfigError` whose lines name the key (in TOML spelling), where its value came from, what
is wrong, and, for unknown keys, the closest valid key.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from oxeo_flows.errors import ConfigError

__all__ = ["Model", "build", "format_validation_error", "kebab"]

M = TypeVar("M", bound=BaseModel)
_POOL_TAGS = frozenset({"vertex-ai", "docker", "process"})


def kebab(name: str) -> str:
    """Return the TOML spelling of a Python field name (``project_number`` → ``project-number``)."""
    return name.replace("_", "-")


class Model(BaseModel):
    """Frozen, strict-about-unknown-keys model with kebab-case aliases."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=kebab,
        populate_by_name=True,
        validate_default=True,
        use_attribute_docstrings=True,
        # inf and nan are never a valid timeout, TTL or size.
        allow_inf_nan=False,
    )


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _unwrap(annotation: Any) -> list[Any]:
    """Flatten Optional/Union/Annotated into the candidate types."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """Walk ``loc`` through nested models, dicts and lists; return the model owning the last key."""
    current: Any = root
    for part in loc:
        candidates = _unwrap(current)
        nxt: Any = None
        for cand in candidates:
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                fields = {info.alias or name: info for name, info in cand.model_fields.items()}
                fields.update(cand.model_fields)
                if isinstance(part, str) and part in fields:
                    nxt = fields[part].annotation
                    break
            origin = typing.get_origin(cand)
            if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, int]):
                nxt = typing.get_args(cand)[1]
                break
            if origin in (list, tuple, Sequence):
                nxt = typing.get_args(cand)[0]
                break
        if nxt is None:
            # A tagged union (e.g. pools) puts the tag in the loc: try the members.
            for cand in candidates:
                if isinstance(cand, type) and issubclass(cand, BaseModel):
                    return cand
            return None
        current = nxt
    for cand in _unwrap(current):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _clean_message(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def format_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    where: str,
    prefix: str = "",
    origin_of: Callable[[tuple[str, ...]], str | None] | None = None,
) -> str:
    """Render a pydantic `ValidationError` as readable lines.

    Args:
        exc: The error to render.
        model: The model that was validated (used to suggest keys).
        where: What was being validated, e.g. ``"stack 'prod' in /repo/pyproject.toml"``.
        prefix: Dotted key prefix shown before each key, e.g. ``"stacks.prod."``.
        origin_of: Optional callback returning where the value at a key came from.

    Returns:
        The message, one line per problem.
    """
    lines = [f"Invalid configuration in {where}:"]
    for err in exc.errors(include_url=False):
        loc: tuple[str, ...] = tuple(str(p) for p in err["loc"])
        # The tagged union of pools adds the tag after the pool name: pools.<name>.<tag>.<key>.
        if len(loc) > 3 and loc[0] == "pools" and loc[2] in _POOL_TAGS:
            loc = (*loc[:2], *loc[3:])
        key = ".".join(kebab(p) for p in loc)
        msg = _clean_message(err["msg"])
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, tuple(err["loc"][:-1]))
            valid = _field_names(owner) if owner else []
            close = difflib.get_close_matches(kebab(str(err["loc"][-1])), valid, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "remove it"
            known = f" Valid keys here: {', '.join(sorted(valid))}." if valid else ""
            msg = f"unknown key ({hint}).{known}"
        elif err["type"] == "missing":
            msg = "is required but missing"
        origin = origin_of(tuple(str(p) for p in err["loc"])) if origin_of else None
        src = f" [from {origin}]" if origin else ""
        label = f"{prefix}{key}" if key else prefix.rstrip(".")
        lines.append(f"  - {label}: {msg}{src}" if label else f"  - {msg}{src}")
    return "\n".join(lines)


def build(model: type[M], data: Mapping[str, Any], *, where: str, prefix: str = "") -> M:
    """Validate ``data`` into ``model`` or raise `ConfigError` with a readable message.

    Args:
        model: The model class.
        data: Raw values (Python or TOML spelling).
        where: What is being built, used in the message (e.g. ``"vertex_job()"``).
        prefix: Dotted key prefix shown before each key.

    Returns:
        The validated model.

    Raises:
        ConfigError: One line per invalid or unknown key.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, where=where, prefix=prefix)) from None
