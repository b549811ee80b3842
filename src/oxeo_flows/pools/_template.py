"""Create or update Prefect work pools idempotently (the shared adapter behind every pool type).

`ensure_pool` turns "this pool should exist, with these job defaults" into at most one read
and one write against the Prefect API:

1. The pool's *base job template* starts from the worker type's own default template
   (`default_base_job_template`, read from the installed worker class, exactly what
   ``prefect work-pool create --type <type>`` would store).
2. Each of our ``defaults`` becomes ``variables.properties.<key>.default`` in that template.
   A key the type does not declare is a `ConfigError`; a ``None`` value means "leave it as the
   type's default".
3. The template carries a marker, the top-level key `MANAGED_MARKER`, recording that
   oxeo-flows manages the pool and which variable defaults it set. (The Prefect server stores
   extra top-level template keys unchanged; workers only read ``job_configuration`` and
   ``variables``.)

Merge policy for a pool that already exists:

- A pool without the marker was created by someone else: it is left alone and a `PoolError`
  says how to adopt it (``adopt=True``, or ``adopt = true`` in the stack's pool section).
- For a managed (or adopted) pool the *stored* template is the starting point, so every edit
  made in the UI or with ``prefect work-pool update`` is kept: the job configuration, other
  variables' defaults, titles, descriptions. Only the defaults of our keys are overwritten.
  A key we set before (listed in the marker) that is now ``None`` or gone goes back to the
  type's default. A variable the user deleted from the schema is restored when we set it.
- ``description`` and ``concurrency_limit`` are written only when given and different.
- *Extensions* (settings the type declares no variable for, such as Vertex's
  ``persistent_resource_id`` or a second worker pool spec) are set by dotted path in the
  ``job_configuration`` and listed in the marker; one we no longer set goes back to the type's
  default, or is removed.
- When nothing differs, nothing is written and the result says ``unchanged``.
- A pool of another type is never converted: delete it first, or choose another name.

Every Prefect API failure is translated into `PoolError`.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from oxeo_flows.errors import ConfigError, MissingExtraError, PoolError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import WorkPool

__all__ = [
    "MANAGED_MARKER",
    "PoolResult",
    "aensure_pool",
    "default_base_job_template",
    "ensure_pool",
]

#: Top-level key of a base job template marking a pool as managed by oxeo-flows. Its value is
#: ``{"managed-by": "oxeo-flows", "keys": [<variable names whose defaults we set>]}``.
MANAGED_MARKER = "x-oxeo-flows"
_MANAGED_BY = "oxeo-flows"

# Work-pool type -> (module defining the worker, oxeo-flows extra that installs it). Importing
# only the module needed is much cheaper than Prefect's registry, which loads every collection.
_WORKER_MODULES: dict[str, tuple[str, str, str | None]] = {
    "process": ("prefect.workers.process", "ProcessWorker", None),
    "vertex-ai": ("prefect_gcp.workers.vertex", "VertexAIWorker", "gcp"),
    "cloud-run": ("prefect_gcp.workers.cloud_run", "CloudRunWorker", "gcp"),
    "cloud-run-v2": ("prefect_gcp.workers.cloud_run_v2", "CloudRunWorkerV2", "gcp"),
    "docker": ("prefect_docker.worker", "DockerWorker", "docker"),
    "ecs": ("prefect_aws.workers.ecs_worker", "ECSWorker", "aws"),
}


@dataclass(frozen=True)
class PoolResult:
    """What `ensure_pool` did (or, with ``dry_run``, would do).

    Attributes:
        name: The work pool's name.
        type: The work pool's type, e.g. ``vertex-ai``.
        action: ``created``, ``updated`` or ``unchanged``.
        changes: Dotted path (``variables.machine_type.default``, ``description``,
            ``concurrency_limit``, ``x-oxeo-flows``...) to ``(old, new)``. Empty when unchanged.
            For a created pool: one entry per default we set (and the description and
            concurrency limit when given), each with ``old`` None.
        dry_run: True when nothing was written.
    """

    name: str
    type: str
    action: Literal["created", "updated", "unchanged"]
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    dry_run: bool = False


# ----------------------------------------------------------------------------- templates


def _worker_class(type: str) -> Any:
    from prefect.workers.base import BaseWorker

    known = _WORKER_MODULES.get(type)
    if known is not None:
        # The class itself, not the registry entry: a subclass (a test double, say) with the
        # same type would otherwise replace it there.
        module_name, class_name, extra = known
        if extra is None:
            module = importlib.import_module(module_name)
        else:
            from oxeo_flows._extras import require

            module = require(module_name, extra)
        cls = getattr(module, class_name, None)
        if cls is not None and getattr(cls, "type", None) == type:
            return cls
    cls = BaseWorker.get_worker_class_from_type(type)
    if cls is None:
        available = sorted(set(_WORKER_MODULES) | set(BaseWorker.get_all_available_worker_types()))
        msg = (
            f"unknown work-pool type {type!r}: no installed Prefect worker provides it. "
            f"Known types: {', '.join(available)}"
        )
        raise ConfigError(msg)
    return cls


def default_base_job_template(type: str) -> dict[str, Any]:
    """The default base job template of a work-pool type, from its installed worker class.

    This is what ``prefect work-pool create --type <type>`` stores (creating a pool from
    Python with an empty template stores ``{}`` instead).

    Args:
        type: Work-pool type, e.g. ``vertex-ai``, ``docker``, ``process``.

    Returns:
        A fresh copy of the template (``job_configuration`` and ``variables``).

    Raises:
        ConfigError: No installed worker provides this type.
        MissingExtraError: The worker's package is not installed (the message names the extra).
    """
    template: dict[str, Any] = _worker_class(type).get_default_base_job_template()
    return copy.deepcopy(template)


def _jsonable(value: Any) -> Any:
    """Normalise a value the way a JSON round trip through the server would (tuples → lists)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        msg = f"pool default {value!r} is not JSON-serialisable: {exc}"
        raise ConfigError(msg) from None


def _check_keys(type: str, defaults: Mapping[str, Any], type_template: dict[str, Any]) -> None:
    declared = type_template.get("variables", {}).get("properties", {})
    unknown = sorted(k for k in defaults if k not in declared)
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(declared), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        msg = (
            f"work-pool type {type!r} does not declare the job variable(s) {', '.join(hints)}. "
            f"Valid keys: {', '.join(sorted(declared))}"
        )
        raise ConfigError(msg)


def _marker_keys(template: Mapping[str, Any]) -> list[str] | None:
    """The keys recorded in the marker, or None when the template is not managed by us."""
    marker = template.get(MANAGED_MARKER)
    if not isinstance(marker, Mapping) or marker.get("managed-by") != _MANAGED_BY:
        return None
    keys = marker.get("keys", [])
    return [str(k) for k in keys] if isinstance(keys, list) else []


_MISSING = object()


def _path(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _get(node: Any, path: str) -> Any:
    for part in _path(path):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return _MISSING
            node = node[part]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def _set(node: Any, path: str, value: Any) -> None:
    """Set (or, with ``_MISSING``, remove) ``path`` in the job configuration."""
    parts = _path(path)
    for i, part in enumerate(parts[:-1]):
        nxt: Any = {} if not isinstance(parts[i + 1], int) else []
        node = node[part] if isinstance(part, int) else node.setdefault(part, nxt)
    last = parts[-1]
    if isinstance(last, int):
        if value is _MISSING:
            if last < len(node):
                del node[last:]
        elif last < len(node):
            node[last] = value
        else:
            node.append(value)
    elif value is _MISSING:
        node.pop(last, None)
    else:
        node[last] = value


def _extend(
    base: dict[str, Any],
    type_template: dict[str, Any],
    extensions: Mapping[str, Any],
    previous: list[str],
) -> None:
    """Set our ``job_configuration`` extensions; restore the ones we no longer set."""
    config = base.setdefault("job_configuration", {})
    for path in sorted(set(previous) - set(extensions), reverse=True):
        default = _get(type_template.get("job_configuration", {}), path)
        _set(config, path, default if default is _MISSING else copy.deepcopy(default))
    for path, value in sorted(extensions.items()):
        _set(config, path, copy.deepcopy(value))


def _marker_extensions(template: Mapping[str, Any]) -> list[str]:
    marker = template.get(MANAGED_MARKER)
    paths = marker.get("extensions", []) if isinstance(marker, Mapping) else []
    return [str(p) for p in paths] if isinstance(paths, list) else []


def _desired_template(
    *,
    type_template: dict[str, Any],
    stored: dict[str, Any] | None,
    ours: dict[str, Any],
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply the merge policy (see the module docstring) and return the template to store."""
    base = copy.deepcopy(stored) if stored else copy.deepcopy(type_template)
    previous = _marker_keys(base) or []
    previous_extensions = _marker_extensions(base)
    type_props: dict[str, Any] = type_template["variables"].get("properties", {})
    variables = base.setdefault("variables", copy.deepcopy(type_template["variables"]))
    props: dict[str, Any] = variables.setdefault("properties", {})
    for key in previous:
        if key in ours or key not in props:
            continue
        # We set this key before and no longer do: back to the type's default.
        restored = type_props.get(key)
        if restored is None:
            continue
        if "default" in restored:
            props[key]["default"] = copy.deepcopy(restored["default"])
        else:
            props[key].pop("default", None)
    for key, value in ours.items():
        if key not in props:
            props[key] = copy.deepcopy(type_props[key])
        props[key]["default"] = value
    _extend(base, type_template, extensions or {}, previous_extensions)
    base[MANAGED_MARKER] = {"managed-by": _MANAGED_BY, "keys": sorted(ours)}
    if extensions:
        base[MANAGED_MARKER]["extensions"] = sorted(extensions)
    return base


def _diff(old: Any, new: Any, path: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                out[sub] = (old[key], None)
            elif key not in old:
                out[sub] = (None, new[key])
            else:
                _diff(old[key], new[key], sub, out)
    elif old != new:
        out[path or "(root)"] = (old, new)


def _template_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Readable changes: ``variables.<key>.<attr>`` for variables, dotted paths elsewhere."""
    out: dict[str, tuple[Any, Any]] = {}
    old_props = old.get("variables", {}).get("properties", {})
    new_props = new.get("variables", {}).get("properties", {})
    for key in sorted(set(old_props) | set(new_props)):
        _diff(old_props.get(key), new_props.get(key), f"variables.{key}", out)
    rest_old = {k: v for k, v in old.items() if k != "variables"}
    rest_new = {k: v for k, v in new.items() if k != "variables"}
    rest_old["variables"] = {k: v for k, v in old.get("variables", {}).items() if k != "properties"}
    rest_new["variables"] = {k: v for k, v in new.get("variables", {}).items() if k != "properties"}
    _diff(rest_old, rest_new, "", out)
    # A marker-only diff is reported as one entry, not one per nested key.
    marker = {k: v for k, v in out.items() if k.startswith(MANAGED_MARKER + ".")}
    if marker:
        for k in marker:
            del out[k]
        out[MANAGED_MARKER] = (old.get(MANAGED_MARKER), new.get(MANAGED_MARKER))
    return out


@dataclass(frozen=True)
class _Plan:
    action: Literal["create", "update", "none"]
    changes: dict[str, tuple[Any, Any]]
    template: dict[str, Any]
    description: str | None
    concurrency_limit: int | None


def _plan(
    name: str,
    *,
    type: str,
    existing: WorkPool | None,
    type_template: dict[str, Any],
    ours: dict[str, Any],
    extensions: dict[str, Any],
    description: str | None,
    concurrency_limit: int | None,
    adopt: bool,
) -> _Plan:
    if existing is None:
        template = _desired_template(
            type_template=type_template, stored=None, ours=ours, extensions=extensions
        )
        changes: dict[str, tuple[Any, Any]] = {
            f"variables.{key}.default": (None, value) for key, value in sorted(ours.items())
        }
        changes.update(
            {f"job_configuration.{path}": (None, v) for path, v in sorted(extensions.items())}
        )
        if description is not None:
            changes["description"] = (None, description)
        if concurrency_limit is not None:
            changes["concurrency_limit"] = (None, concurrency_limit)
        return _Plan("create", changes, template, description, concurrency_limit)

    if existing.type != type:
        msg = (
            f"work pool {name!r} exists with type {existing.type!r}, not {type!r}; a pool's type "
            f"cannot change. Delete it (prefect work-pool delete {name!r}) or use another name."
        )
        raise PoolError(msg)
    stored = dict(existing.base_job_template or {})
    if _marker_keys(stored) is None and not adopt:
        msg = (
            f"work pool {name!r} already exists and is not managed by oxeo-flows, so it was not "
            "changed. To let oxeo-flows manage it (keeping your edits, overriding only the job "
            "defaults it sets), pass adopt=True, or set adopt = true in its [pools] section of "
            "the stack; or choose another pool name."
        )
        raise PoolError(msg)
    template = _desired_template(
        type_template=type_template, stored=stored, ours=ours, extensions=extensions
    )
    changes = _template_changes(stored, template)
    new_description = None
    if description is not None and description != existing.description:
        changes["description"] = (existing.description, description)
        new_description = description
    new_limit = None
    if concurrency_limit is not None and concurrency_limit != existing.concurrency_limit:
        changes["concurrency_limit"] = (existing.concurrency_limit, concurrency_limit)
        new_limit = concurrency_limit
    if not changes:
        return _Plan("none", {}, template, None, None)
    return _Plan("update", changes, template, new_description, new_limit)


def _prepare(type: str, defaults: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    type_template = default_base_job_template(type)
    _check_keys(type, defaults, type_template)
    ours = {k: _jsonable(v) for k, v in defaults.items() if v is not None}
    return type_template, ours


def _api_error(name: str, action: str, exc: BaseException) -> PoolError:
    import httpx

    detail = str(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            body = exc.response.json()
            detail = json.dumps(body.get("detail", body)) if isinstance(body, dict) else str(body)
        except ValueError:
            detail = exc.response.text[:500]
        detail = f"HTTP {exc.response.status_code}: {detail}"
    elif isinstance(exc, httpx.TransportError):
        from prefect.settings import PREFECT_API_URL

        detail = (
            f"cannot reach the Prefect API at {PREFECT_API_URL.value() or '(ephemeral)'} "
            f"({type(exc).__name__}: {exc}); check PREFECT_API_URL and that the server is up"
        )
    msg = f"could not {action} work pool {name!r}: {detail}"
    return PoolError(msg)


def _api_errors() -> tuple[type[BaseException], ...]:
    import httpx
    from prefect.exceptions import PrefectException
    from pydantic import ValidationError

    return (httpx.HTTPError, PrefectException, ValidationError)


def _result(name: str, type: str, plan: _Plan, dry_run: bool) -> PoolResult:
    action: Literal["created", "updated", "unchanged"] = (
        "created"
        if plan.action == "create"
        else "updated"
        if plan.action == "update"
        else "unchanged"
    )
    return PoolResult(name=name, type=type, action=action, changes=plan.changes, dry_run=dry_run)


def _update_kwargs(plan: _Plan) -> dict[str, Any]:
    # Only fields that are set: the client sends set fields, and an explicit None would clear
    # the pool's description or concurrency limit.
    kwargs: dict[str, Any] = {"base_job_template": plan.template}
    if plan.description is not None:
        kwargs["description"] = plan.description
    if plan.concurrency_limit is not None:
        kwargs["concurrency_limit"] = plan.concurrency_limit
    return kwargs


def _create_kwargs(name: str, type: str, plan: _Plan) -> dict[str, Any]:
    return {"name": name, "type": type, **_update_kwargs(plan)}


def _check_args(name: str, concurrency_limit: int | None) -> None:
    if not isinstance(name, str) or not name.strip() or "/" in name or "%" in name:
        msg = f"invalid work pool name {name!r}: it must be non-empty and contain no '/' or '%'"
        raise ConfigError(msg)
    if concurrency_limit is not None and (
        isinstance(concurrency_limit, bool)
        or not isinstance(concurrency_limit, int)
        or concurrency_limit < 0
    ):
        msg = (
            f"invalid concurrency_limit {concurrency_limit!r} for work pool {name!r}: "
            "use a whole number >= 0, or None for no limit"
        )
        raise ConfigError(msg)


def _check_stored(name: str, defaults: Any, extensions: Any, description: Any) -> None:
    """What the pool stores in Prefect: the right shapes, and no secret value loaded here."""
    from oxeo_flows._redact import refuse_loaded_secrets

    if not isinstance(defaults, Mapping):
        msg = (
            f"defaults of work pool {name!r} must be a dict of job variable -> default value, "
            f"got {type(defaults).__name__}"
        )
        raise ConfigError(msg)
    refuse_loaded_secrets(dict(defaults), where=f"the job variables of work pool {name!r}")
    refuse_loaded_secrets(dict(extensions or {}), where=f"the extensions of work pool {name!r}")
    refuse_loaded_secrets(description or "", where=f"the description of work pool {name!r}")


# ----------------------------------------------------------------------------- I/O


def ensure_pool(
    name: str,
    *,
    type: str,
    defaults: Mapping[str, Any],
    extensions: Mapping[str, Any] | None = None,
    description: str | None = None,
    concurrency_limit: int | None = None,
    adopt: bool = False,
    dry_run: bool = False,
) -> PoolResult:
    """Create or update a work pool so its job defaults are ``defaults``; write only if needed.

    The merge policy for existing pools is in the module docstring of `oxeo_flows.pools`: the
    stored template is kept, only our keys' defaults are overridden, a key we set earlier and no
    longer set goes back to the type's default, and an unchanged pool is not written (one read,
    no write).

    Args:
        name: Work pool name.
        type: Work-pool type, e.g. ``vertex-ai``, ``docker``, ``process``.
        defaults: Job variable name → default value. ``None`` leaves the type's default.
        extensions: Settings the type declares no variable for, by dotted path in the
            ``job_configuration`` (``job_spec.persistent_resource_id``; a number indexes a list:
            ``job_spec.worker_pool_specs.1``). Recorded in the marker: a path no longer given
            goes back to the type's default (or is removed).
        description: Pool description (written when given and different).
        concurrency_limit: Pool concurrency limit (written when given and different).
        adopt: Take over an existing pool that oxeo-flows did not create.
        dry_run: Read only; the result says what would be written.

    Returns:
        What was (or would be) done, with the changes as dotted paths.

    Raises:
        ConfigError: Unknown type, or a key in ``defaults`` the type does not declare.
        MissingExtraError: The worker's package is not installed.
        PoolError: The pool exists unmanaged (and ``adopt`` is False), has another type, or the
            Prefect API failed.

    Example:
        ```python
        from oxeo_flows.pools import ensure_pool

        result = ensure_pool("local-process", type="process", defaults={"working_dir": "/srv"})
        print(result.action, result.changes)
        ```
    """
    _check_args(name, concurrency_limit)
    _check_stored(name, defaults, extensions, description)
    type_template, ours = _prepare(type, defaults)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    errors = _api_errors()
    try:
        with get_client(sync_client=True) as client:
            try:
                existing: WorkPool | None = client.read_work_pool(name)
            except ObjectNotFound:
                existing = None
            except errors as exc:
                raise _api_error(name, "read", exc) from exc
            plan = _plan(
                name,
                type=type,
                existing=existing,
                type_template=type_template,
                ours=ours,
                extensions={k: _jsonable(v) for k, v in (extensions or {}).items()},
                description=description,
                concurrency_limit=concurrency_limit,
                adopt=adopt,
            )
            if dry_run or plan.action == "none":
                return _result(name, type, plan, dry_run)
            try:
                if plan.action == "create":
                    client.create_work_pool(WorkPoolCreate(**_create_kwargs(name, type, plan)))
                else:
                    client.update_work_pool(name, WorkPoolUpdate(**_update_kwargs(plan)))
            except errors as exc:
                raise _api_error(name, plan.action, exc) from exc
    except (PoolError, ConfigError, MissingExtraError):
        raise
    except errors as exc:  # entering or leaving the client
        raise _api_error(name, "reach the Prefect API for", exc) from exc
    return _result(name, type, plan, dry_run)


async def aensure_pool(
    name: str,
    *,
    type: str,
    defaults: Mapping[str, Any],
    extensions: Mapping[str, Any] | None = None,
    description: str | None = None,
    concurrency_limit: int | None = None,
    adopt: bool = False,
    dry_run: bool = False,
) -> PoolResult:
    """Async `ensure_pool`: the same work on a worker thread, never blocking the event loop.

    Args:
        name: Work pool name.
        type: Work-pool type, e.g. ``vertex-ai``, ``docker``, ``process``.
        defaults: Job variable name → default value. ``None`` leaves the type's default.
        extensions: Job-configuration settings by dotted path (see `ensure_pool`).
        description: Pool description (written when given and different).
        concurrency_limit: Pool concurrency limit (written when given and different).
        adopt: Take over an existing pool that oxeo-flows did not create.
        dry_run: Read only; the result says what would be written.

    Returns:
        What was (or would be) done (same result and errors as `ensure_pool`).
    """
    import anyio.to_thread

    call = functools.partial(
        ensure_pool,
        name,
        type=type,
        defaults=defaults,
        extensions=extensions,
        description=description,
        concurrency_limit=concurrency_limit,
        adopt=adopt,
        dry_run=dry_run,
    )
    return await anyio.to_thread.run_sync(call)
