"""Loading stacks: configuration files, the environment, `extends`, and the one resolver."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from oxeo_flows._model import Model, format_validation_error
from oxeo_flows.errors import ConfigError
from oxeo_flows.stack.model import Stack

ENV_PREFIX = "OXEO_FLOWS_"
#: Environment variables with the prefix that are not stack keys.
RESERVED_ENV = frozenset({"OXEO_FLOWS_STACK", "OXEO_FLOWS_CONFIG", "OXEO_FLOWS_DEBUG"})
LOCAL = "local"
_FREEFORM = frozenset({"labels", "env", "variables", "parameters", "tags", "pools"})


# ----------------------------------------------------------------------------- loading


def find_config_file(start: Path | None = None) -> Path | None:
    """Find the configuration file for a project directory.

    ``OXEO_FLOWS_CONFIG`` wins when set. Otherwise the search walks up from ``start`` (the
    working directory by default) and stops at the first directory holding an
    ``oxeo-flows.toml`` (preferred) or a ``pyproject.toml``; a ``pyproject.toml`` without a
    ``[tool.oxeo-flows]`` table means "no configuration" (the project root was found).

    Args:
        start: Directory to start from.

    Returns:
        The file, or None when there is none.
    """
    explicit = os.environ.get("OXEO_FLOWS_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            msg = f"OXEO_FLOWS_CONFIG points to {str(path)!r}, which is not a file"
            raise ConfigError(msg)
        return path
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        dedicated = directory / "oxeo-flows.toml"
        if dedicated.is_file():
            return dedicated
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            return pyproject
    return None


def _read_table(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    except UnicodeDecodeError as exc:
        msg = (
            f"{path} is not UTF-8 text (undecodable byte at offset {exc.start}); "
            "TOML files must be UTF-8: re-save it as UTF-8"
        )
        raise ConfigError(msg) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}. Fix the syntax (see https://toml.io)."
        raise ConfigError(msg) from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        table = tool.get("oxeo-flows") if isinstance(tool, dict) else None
        if table is None:
            if "oxeo_flows" in tool:
                msg = (
                    f"{path}: the table is spelled [tool.oxeo-flows] (with a hyphen), "
                    "not [tool.oxeo_flows]"
                )
                raise ConfigError(msg)
            return {}
    else:
        table = data
    if not isinstance(table, dict):
        msg = f"{path}: the oxeo-flows configuration must be a table"
        raise ConfigError(msg)
    known = {"default-stack", "stacks"}
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else "stack settings go under stacks.<name>"
            )
            msg = f"{path}: unknown top-level key {key!r} ({hint})"
            raise ConfigError(msg)
    stacks = table.get("stacks", {})
    if not isinstance(stacks, dict) or not all(isinstance(v, dict) for v in stacks.values()):
        msg = (
            f"{path}: 'stacks' must be a table of tables, e.g. [stacks.prod] "
            "or [tool.oxeo-flows.stacks.prod]"
        )
        raise ConfigError(msg)
    default = table.get("default-stack")
    if default is not None and not isinstance(default, str):
        msg = f"{path}: default-stack must be a string, got {default!r}"
        raise ConfigError(msg)
    return table


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in RESERVED_ENV:
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            msg = (
                f"environment variable {var} has an empty key part; "
                "nest with '__' (e.g. OXEO_FLOWS_GCP__REGION)"
            )
            raise ConfigError(msg)
        value: Any = raw
        stripped = raw.strip()
        if not stripped:
            msg = (
                f"environment variable {var} is set but empty; give it a value, or unset it "
                f"(unset {var}) to use the stack's value"
            )
            raise ConfigError(msg)
        if stripped[0] in "[{":
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                msg = f"environment variable {var} looks like JSON but does not parse: {exc}"
                raise ConfigError(msg) from None
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                msg = f"environment variable {var} conflicts with another OXEO_FLOWS_ variable"
                raise ConfigError(msg)
            node = child
        node[parts[-1]] = value
        origins[tuple(parts)] = f"env {var}"
    return data, origins


def _merge(
    base: dict[str, Any],
    top: Mapping[str, Any],
    origins: dict[tuple[str, ...], str],
    label: str,
    path: tuple[str, ...] = (),
) -> dict[str, Any]:
    out = dict(base)
    freeform = bool(path) and path[-1] in _FREEFORM and not (len(path) >= 2 and path[-2] == "pools")
    for key, value in top.items():
        # Accept both spellings; store the Python one so that layers merge. Keys of free-form
        # tables (labels, env, pool names...) are kept as written.
        name = key if freeform else key.replace("-", "_")
        here = (*path, name)
        if isinstance(value, Mapping):
            current = out.get(name)
            out[name] = _merge(
                current if isinstance(current, dict) else {}, value, origins, label, here
            )
        else:
            out[name] = value
            origins[here] = label
    return out


def _split_lists(model: type[Model], data: dict[str, Any]) -> dict[str, Any]:
    """Let env vars give tuple fields as comma-separated strings."""
    out = dict(data)
    for name, info in model.model_fields.items():
        if name not in out:
            continue
        value = out[name]
        ann = str(info.annotation)
        if isinstance(value, str) and ann.startswith("tuple[") and "int" not in ann:
            out[name] = tuple(p.strip() for p in value.split(",") if p.strip())
        elif isinstance(value, dict):
            sub = _submodel(info.annotation)
            if sub is not None:
                out[name] = _split_lists(sub, value)
    return out


def _submodel(annotation: Any) -> type[Model] | None:
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return annotation
    return None


def _resolve_extends(
    stacks: Mapping[str, dict[str, Any]], name: str, where: str
) -> list[tuple[str, dict[str, Any]]]:
    chain: list[tuple[str, dict[str, Any]]] = []
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            msg = f"{where}: stacks extend each other in a cycle: {' -> '.join([*seen, current])}"
            raise ConfigError(msg)
        seen.append(current)
        table = stacks.get(current)
        if table is None:
            if current == LOCAL:
                table = {}
            else:
                msg = f"{where}: stack {seen[-2]!r} extends {current!r}, which is not defined"
                raise ConfigError(msg)
        chain.append((current, table))
        parent = table.get("extends")
        if parent is not None and not isinstance(parent, str):
            msg = f"{where}: stacks.{current}.extends must be a stack name"
            raise ConfigError(msg)
        current = parent
    return list(reversed(chain))


def load_stack(
    name: str | None = None,
    *,
    project_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Stack:
    """Resolve and validate a stack.

    Args:
        name: Stack to load; defaults to ``OXEO_FLOWS_STACK``, then the file's
            ``default-stack``, then ``local``.
        project_dir: Where to start looking for ``oxeo-flows.toml`` / ``pyproject.toml``
            (default: the working directory).
        overrides: Explicit values, highest precedence, nested like the TOML
            (e.g. ``{"gcp": {"region": "europe-west1"}}``).
        environ: Environment to read ``OXEO_FLOWS_*`` from (default: ``os.environ``).

    Returns:
        The validated stack.

    Raises:
        ConfigError: Unknown stack, invalid file, or invalid values; the message names the file,
            the stack and the key, and how to fix it.

    Example:
        ```python
        from oxeo_flows import load_stack

        stack = load_stack()          # "local" unless configured otherwise
        print(stack.name, stack.dask.backend)
        ```
    """
    if name is not None and not isinstance(name, str):
        msg = f"stack must be a Stack, a stack name or None, got {type(name).__name__}"
        raise ConfigError(msg)
    if overrides is not None and not isinstance(overrides, Mapping):
        msg = (
            f"overrides must be a mapping nested like the TOML, e.g. "
            f"{{'gcp': {{'region': 'europe-west4'}}}}, got {type(overrides).__name__}"
        )
        raise ConfigError(msg)
    env = os.environ if environ is None else environ
    path = find_config_file(Path(project_dir) if project_dir is not None else None)
    table = _read_table(path) if path else {}
    stacks: dict[str, dict[str, Any]] = table.get("stacks", {})
    where_file = str(path) if path else "(no configuration file)"

    chosen = name or env.get("OXEO_FLOWS_STACK") or table.get("default-stack") or LOCAL
    how = (
        "argument"
        if name
        else "OXEO_FLOWS_STACK"
        if env.get("OXEO_FLOWS_STACK")
        else "default-stack"
        if table.get("default-stack")
        else "built-in default"
    )
    if chosen not in stacks and chosen != LOCAL:
        available = sorted({LOCAL, *stacks})
        close = difflib.get_close_matches(chosen, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = (
            f"Unknown stack {chosen!r} (chosen by {how}); {where_file} defines: "
            f"{', '.join(available)}.{hint}"
        )
        raise ConfigError(msg)

    origins: dict[tuple[str, ...], str] = {}
    data: dict[str, Any] = {}
    for stack_name, stack_table in _resolve_extends(stacks, chosen, where_file):
        label = f"{where_file} [stacks.{stack_name}]"
        data = _merge(data, stack_table, origins, label)
    env_data, env_origins = _env_layer(env)
    data = _merge(data, env_data, origins, "env")
    origins.update(env_origins)
    if overrides:
        data = _merge(data, overrides, origins, "argument")
    data.pop("extends", None)
    data["name"] = chosen
    data = _split_lists(Stack, data)

    try:
        stack = Stack.model_validate(data)
    except ValidationError as exc:

        def origin_of(loc: tuple[str, ...]) -> str | None:
            key = tuple(str(p).replace("-", "_") for p in loc)
            while key:
                if key in origins:
                    return origins[key]
                key = key[:-1]
            return None

        message = format_validation_error(
            exc, Stack, where=f"stack {chosen!r} ({where_file})", origin_of=origin_of
        )
        raise ConfigError(message) from None
    stack._origins = origins
    stack._file = path
    return stack


# ----------------------------------------------------------------------------- resolving

_memo: dict[str | None, tuple[tuple[Any, ...], Stack]] = {}


def _fingerprint(stack_file: Path | None) -> tuple[Any, ...]:
    """What the active stack depends on: cwd, ``OXEO_FLOWS_*`` variables, the config file.

    Cheap enough for every call (a few microseconds): the environment is scanned in its raw
    form, and a single ``stat`` sees an edited config file, or (when there is none) a file
    created or removed in the working directory.
    """
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        env = tuple(kv for kv in data.items() if kv[0].startswith(b"OXEO_FLOWS_"))
    else:  # pragma: no cover - non-CPython environ
        env = tuple(kv for kv in os.environ.items() if kv[0].startswith("OXEO_FLOWS_"))
    cwd = os.getcwd()
    try:
        stamp = os.stat(stack_file if stack_file is not None else cwd).st_mtime_ns
    except OSError:
        stamp = None
    return (cwd, env, stamp)


def resolve_stack(stack: Stack | str | None = None) -> Stack:
    """The one resolver behind every ``stack=`` argument of oxeo-flows.

    A `Stack` is returned as is; a name (or None, the active stack) is loaded with
    `load_stack` and remembered until the working directory, an ``OXEO_FLOWS_*`` variable or
    the configuration file changes.

    Args:
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The stack.

    Raises:
        ConfigError: ``stack`` is of another type, or the stack does not load.

    Example:
        ```python
        from oxeo_flows import resolve_stack

        assert resolve_stack("local").name == "local"
        ```
    """
    if isinstance(stack, Stack):
        return stack
    if stack is not None and not isinstance(stack, str):
        msg = f"stack must be a Stack, a stack name or None, got {type(stack).__name__}"
        raise ConfigError(msg)
    memo = _memo.get(stack)
    if memo is not None and memo[0] == _fingerprint(memo[1].file):
        return memo[1]
    loaded = load_stack(stack)
    _memo[stack] = (_fingerprint(loaded.file), loaded)
    return loaded


def forget_stacks() -> None:
    """Forget the stacks `resolve_stack` remembered (they are re-read on next use)."""
    _memo.clear()
