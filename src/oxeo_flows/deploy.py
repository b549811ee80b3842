"""One-call deploys: sync the code, ensure the storage block and the pool, register the deployment.

`deploy_flow` does, in order (and stops at the first failure, so a failed sync never leaves a
deployment pointing at half-uploaded code):

1. load the flow from the local project (to read its name and parameter schema);
2. with ``storage.bucket`` set: `sync_code` the project to S3 (only changed files), then save
   the `S3Bucket` block idempotently with `ensure_block`; the deployment's pull step is
   ``oxeo_flows.steps.pull_code`` with that block. Without storage (the ``local`` stack) the
   deployment runs from the local directory (``set_working_directory``);
3. ensure the work pool for the stack's runner (``process``, ``docker`` or ``vertex``);
4. compare with the deployment already registered and write only if something differs. The
   deployment's ``version`` is a hash of the code tree, so re-deploying unchanged code with
   unchanged settings writes nothing and reports ``unchanged``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from oxeo_flows.errors import ConfigError, DeployError, OxeoFlowsError
from oxeo_flows.pools.kinds import STACK_ENV

if TYPE_CHECKING:
    from oxeo_flows.blocks import BlockResult
    from oxeo_flows.pools import PoolResult
    from oxeo_flows.pools.kinds import PoolKind
    from oxeo_flows.stack import Stack
    from oxeo_flows.storage import SyncReport

__all__ = ["DeployResult", "deploy_flow"]

_DEPLOYMENT_NAME_RE = re.compile(r"^[^/%&><]+$")


@dataclass(frozen=True)
class DeployResult:
    """What `deploy_flow` did (or, with ``dry_run``, would do).

    Attributes:
        name: ``<flow name>/<deployment name>``.
        action: ``created``, ``updated`` or ``unchanged`` (for the deployment itself).
        changes: Deployment field → ``(old, new)``.
        deployment_id: The deployment's id (None for a dry run of a new deployment).
        work_pool: The work pool.
        runner: ``process``, ``docker`` or ``vertex``.
        source: ``s3://bucket/folder`` or the local directory the code runs from.
        version: Hash of the code tree (the deployment's version).
        job_variables: Job variables stored on the deployment.
        sync: The code sync report (None without storage).
        storage_block: What `ensure_block` did with the storage block (None without storage).
        pool: What the pool ensure did.
        notes: What a dry run found that the real run would stop at (a missing block).
        dry_run: True when nothing was written.
    """

    name: str
    action: Literal["created", "updated", "unchanged"]
    changes: dict[str, tuple[Any, Any]]
    deployment_id: str | None
    work_pool: str
    runner: str
    source: str
    version: str
    job_variables: dict[str, Any] = field(default_factory=dict)
    sync: SyncReport | None = None
    storage_block: BlockResult | None = None
    pool: PoolResult | None = None
    notes: tuple[str, ...] = ()
    dry_run: bool = False

    def summary(self) -> str:
        """A few human-readable lines (a dry run says what *would* be done)."""
        prefix = "[dry run] " if self.dry_run else ""
        lines = [
            f"{prefix}deployment {self.name}: {_shown(self.action, self.dry_run)} "
            f"(version {self.version})"
        ]
        if self.changes:
            lines.append("  changed: " + ", ".join(sorted(self.changes)))
        if self.sync is not None:
            lines.append(f"  code: {self.sync.summary()}")
        else:
            lines.append(f"  code: runs from {self.source}")
        if self.storage_block is not None:
            action = _shown(self.storage_block.action, self.dry_run)
            lines.append(f"  storage block {self.storage_block.slug}: {action}")
        if self.pool is not None:
            action = _shown(self.pool.action, self.dry_run)
            lines.append(f"  work pool {self.pool.name} ({self.pool.type}): {action}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _shown(action: str, dry_run: bool) -> str:
    """``created`` as ``would create`` in a dry run (nothing was written)."""
    if not dry_run or action == "unchanged":
        return action
    return {"created": "would create", "updated": "would update"}.get(action, action)


class _PullSteps:
    """A minimal `RunnerStorage` whose only job is to give the deployment its pull steps."""

    def __init__(self, steps: list[dict[str, Any]], destination: Path) -> None:
        self._steps = steps
        self._destination = destination

    def set_base_path(self, path: Path) -> None:
        self._destination = path

    @property
    def pull_interval(self) -> int | None:
        return None

    @property
    def destination(self) -> Path:
        return self._destination

    async def pull_code(self) -> None:
        return None

    def to_pull_step(self) -> list[dict[str, Any]]:
        return [dict(step) for step in self._steps]

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _PullSteps) and other._steps == self._steps

    __hash__ = None  # type: ignore[assignment]


@contextlib.contextmanager
def _on_sys_path(path: Path) -> Iterator[None]:
    entry = str(path)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _load_flow(root: Path, entrypoint: str) -> Any:
    file, _, func = entrypoint.rpartition(":") if isinstance(entrypoint, str) else ("", "", "")
    if not file.strip() or not func.strip():
        msg = (
            f"entrypoint {entrypoint!r} must be 'path/to/file.py:flow_function', "
            "e.g. 'flows/extract.py:extract'"
        )
        raise ConfigError(msg)
    path = (root / file).resolve()
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        msg = f"entrypoint file {file!r} {state} under {root}; give the flow's .py file"
        raise ConfigError(msg)
    if root.resolve() not in path.parents:
        msg = f"entrypoint {entrypoint!r} is outside the project directory {root}"
        raise ConfigError(msg)
    from prefect.flows import load_flow_from_entrypoint

    try:
        with _on_sys_path(root):
            return load_flow_from_entrypoint(f"{path}:{func}", use_placeholder_flow=False)
    except Exception as exc:
        msg = f"cannot load flow {entrypoint!r} from {root}: {type(exc).__name__}: {exc}"
        raise DeployError(msg) from exc


def _code_digest(root: Path, stack: Stack) -> str:
    import hashlib

    from oxeo_flows.storage import code_files, file_digest

    h = hashlib.sha256()
    for rel in code_files(root, ignore=stack.storage.ignore):
        h.update(f"{rel}\0{file_digest(root / rel).sha256}\n".encode())
    return h.hexdigest()


def _deployment_variables(
    kind: PoolKind, stack: Stack, pool: str, job: Any, *, defaults: Mapping[str, Any], ids: Any
) -> dict[str, Any]:
    """The deployment's job variables: what ``job`` changes from the pool's, plus the stack.

    The pool's template holds the stack's job settings; the deployment carries only the
    variables an explicit ``job`` sets differently, and the environment (the pool's, with
    ``OXEO_FLOWS_STACK``): Prefect replaces a pool's ``env`` default whole, so the API-key
    protection (``PREFECT_API_KEY: null``) and the pool's entries are kept in it.
    """
    if job is None:
        explicit: dict[str, Any] = {}
    elif isinstance(job, Mapping):
        explicit = dict(job)
    elif isinstance(job, kind.spec_type):
        declared = pool if pool in stack.pools else None
        explicit = kind.render(job, stack, declared, ids)
    else:
        msg = (
            f"job for a {kind.type!r} pool must be a {kind.spec_type.__name__} or a dict of job "
            f"variables, got {type(job).__name__}"
        )
        raise ConfigError(msg)
    from oxeo_flows._redact import refuse_loaded_secrets

    refuse_loaded_secrets(explicit, where="deploy_flow(job=)")
    out = {k: v for k, v in explicit.items() if k != "env" and defaults.get(k) != v}
    out["env"] = {
        **dict(defaults.get("env") or {}),
        **dict(explicit.get("env") or {}),
        STACK_ENV: stack.name,
    }
    return out


def _pull_steps(
    stack: Stack, kind: PoolKind, root: Path, pool: str
) -> tuple[str, list[dict[str, Any]] | None]:
    """Where the runs get the code: ``("s3", None)`` (decided after the sync), the image, or here.

    Raises:
        DeployError: The pool's runs cannot see this directory and no code storage is set.
    """
    if stack.storage.bucket:
        return "s3", None
    if stack.storage.image_code_dir:
        step = {"directory": stack.storage.image_code_dir}
        return "image", [{"prefect.deployments.steps.set_working_directory": step}]
    if kind.remote:
        msg = (
            f"runs of work pool {pool!r} ({kind.type}) cannot see {root} on this machine, and "
            f"stack {stack.name!r} sets no code storage. Set storage.bucket (code synced to S3 "
            "and pulled at run time), or storage.image-code-dir if the image already holds the "
            "project (e.g. image-code-dir = '/opt/prefect/flows')"
        )
        raise DeployError(msg)
    return "local", [{"prefect.deployments.steps.set_working_directory": {"directory": str(root)}}]


def _check_parameters(flow: Any, parameters: Mapping[str, Any]) -> None:
    import difflib

    known = sorted(flow.parameters.properties or {})
    unknown = [p for p in parameters if p not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        msg = (
            f"flow {flow.name!r} has no parameter {', '.join(hints)}; its parameters are: "
            f"{', '.join(known) or '(none)'}"
        )
        raise ConfigError(msg)


def _check_target(existing: Any, pool: str, stack: Stack, force: bool) -> None:
    """Refuse to move an existing deployment to another pool or stack without ``force``."""
    if existing is None or force:
        return
    full = f"deployment {existing.name!r}"
    if existing.work_pool_name and existing.work_pool_name != pool:
        msg = (
            f"{full} runs on work pool {existing.work_pool_name!r}; deploying it to {pool!r} "
            "would move every future run there. Pass force=True (--force) to re-target it, or "
            "deploy under another name"
        )
        raise DeployError(msg)
    env = (existing.job_variables or {}).get("env") or {}
    old_stack = env.get(STACK_ENV) if isinstance(env, Mapping) else None
    if old_stack and old_stack != stack.name:
        msg = (
            f"{full} was deployed from stack {old_stack!r}; deploying it from {stack.name!r} "
            "would switch its runs' secrets, Dask backend and storage. Pass force=True (--force) "
            "to re-target it, or deploy under another name"
        )
        raise DeployError(msg)


def _check_call_arguments(parameters: Any, tags: Any, description: Any) -> None:
    """Types of the plain arguments of `deploy_flow`, checked before anything is read."""
    if parameters is not None and not (
        isinstance(parameters, Mapping) and all(isinstance(k, str) for k in parameters)
    ):
        got = (
            "a dict with non-string keys"
            if isinstance(parameters, Mapping)
            else type(parameters).__name__
        )
        msg = (
            f"parameters must be a dict of parameter name -> default value, got {got}; "
            "e.g. parameters={'date': '2026-01-01'}"
        )
        raise ConfigError(msg)
    if tags is not None and (
        isinstance(tags, str) or not all(isinstance(t, str) and t.strip() for t in tags)
    ):
        msg = (
            f"tags must be a list of non-empty strings, got {tags!r}; e.g. tags=['nightly'] "
            "(a single string is not split into tags)"
        )
        raise ConfigError(msg)
    if description is not None and not isinstance(description, str):
        msg = f"description must be a string, got {type(description).__name__}"
        raise ConfigError(msg)


#: The longest schedule interval accepted, in seconds (a year).
_MAX_INTERVAL = 366 * 24 * 3600.0


def _is_prefect_schedule(value: Any) -> bool:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    return isinstance(value, CronSchedule | IntervalSchedule | RRuleSchedule)


def _schedules(schedule: Any) -> list[Any]:
    if schedule is None:
        return []
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    if isinstance(schedule, str):
        try:
            value: Any = CronSchedule(cron=schedule)
        except ValueError:
            msg = (
                f"schedule {schedule!r} is not a valid cron expression; give five fields "
                "MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK, e.g. '0 6 * * *' (06:00 every day)"
            )
            raise ConfigError(msg) from None
    elif isinstance(schedule, dt.timedelta | int | float) and not isinstance(schedule, bool):
        seconds = schedule.total_seconds() if isinstance(schedule, dt.timedelta) else schedule
        if not math.isfinite(seconds) or seconds <= 0 or seconds > _MAX_INTERVAL:
            msg = (
                f"schedule interval must be a positive, finite number of seconds (at most "
                f"{_MAX_INTERVAL:.0f}, a year) or a timedelta, got {schedule!r}"
            )
            raise ConfigError(msg)
        value = IntervalSchedule(interval=dt.timedelta(seconds=seconds))
    elif _is_prefect_schedule(schedule):
        value = schedule
    else:
        msg = (
            f"schedule must be a cron string ('0 6 * * *'), an interval (seconds or a "
            f"timedelta) or a Prefect schedule, got {type(schedule).__name__}"
        )
        raise ConfigError(msg)
    return [DeploymentScheduleCreate(schedule=value, active=True)]


def _schedule_key(schedule: Any) -> Any:
    data = schedule.model_dump(mode="json", exclude_none=True)
    data.pop("anchor_date", None)
    return data


def _text(value: Any) -> str | None:
    return None if value in (None, "", "None") else str(value)


def _diff(existing: Any, desired: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    schema_keys = ("properties", "required", "definitions")
    for key, wanted in desired.items():
        old: Any
        new: Any
        if key == "schedules":
            old = [_schedule_key(s.schedule) for s in existing.schedules or []]
            new = [_schedule_key(s.schedule) for s in wanted]
        elif key == "parameter_openapi_schema":
            stored = existing.parameter_openapi_schema or {}
            old = {k: stored.get(k) for k in schema_keys if stored.get(k)}
            new = {k: wanted.get(k) for k in schema_keys if wanted.get(k)}
        elif key == "description":
            # Prefect stores a missing description as the string "None".
            old, new = _text(existing.description), _text(wanted)
        elif key == "tags":
            old, new = sorted(existing.tags or []), sorted(wanted or [])
        else:
            old, new = getattr(existing, key), wanted
        if old != new:
            changes[key] = (old, new)
    return changes


def deploy_flow(
    entrypoint: str,
    *,
    name: str,
    stack: Stack | str | None = None,
    work_pool: str | None = None,
    job: Any = None,
    parameters: Mapping[str, Any] | None = None,
    schedule: Any = None,
    tags: Sequence[str] | None = None,
    description: str | None = None,
    src: str | os.PathLike[str] = ".",
    force: bool = False,
    dry_run: bool = False,
) -> DeployResult:
    """Ship a flow: sync its code, ensure storage block and work pool, register the deployment.

    The deployment carries its stack (``OXEO_FLOWS_STACK`` in its job environment), so its runs
    load the stack it was deployed from. The work pool is ensured from the stack exactly as
    ``oxeo-flows apply`` would (`oxeo_flows.pools.kinds`); the deployment's job variables hold
    only what an explicit ``job`` changes. Everything is checked before the first write.

    Args:
        entrypoint: ``path/to/file.py:flow_function``, relative to ``src``.
        name: Deployment name.
        stack: A `Stack`, a stack name, or None for the active stack.
        work_pool: Work pool (default: the runner section's ``work-pool``, then the stack's
            ``work-pool``, then ``<stack>-<runner>``).
        job: Job settings for this deployment only: a `DockerJob` / `VertexJob`, or a dict of
            job variables. Default: the pool's (the stack's).
        parameters: Default parameters of the deployment (names must be the flow's).
        schedule: A cron string, an interval (``timedelta`` or seconds) or a Prefect schedule.
        tags: Deployment tags.
        description: Deployment description (default: the flow's docstring).
        src: The project directory (default: the working directory).
        force: Re-target an existing deployment to another work pool or stack.
        dry_run: Compare only: nothing is uploaded, saved or registered; a block the real run
            would need but that does not exist is reported in ``notes``.

    Returns:
        A `DeployResult`.

    Raises:
        ConfigError: Bad entrypoint, stack, job settings or parameter names.
        SyncError: The code sync failed part-way; no deployment was written.
        BlockError: A block could not be read or saved.
        PoolError: The pool could not be ensured.
        DeployError: The flow could not be loaded; the pool's runs cannot see the code; the
            deployment exists for another pool or stack (without ``force``); or it could not be
            registered.

    Example:
        ```python
        from oxeo_flows import deploy_flow

        result = deploy_flow("flows/extract.py:extract", name="extract", stack="prod")
        print(result.summary())
        ```
    """
    if not isinstance(name, str) or not name.strip() or not _DEPLOYMENT_NAME_RE.match(name):
        msg = (
            f"deployment name {name!r} is invalid: "
            "it must be non-empty and contain no '/', '%', '&', '<' or '>'"
        )
        raise ConfigError(msg)
    _check_call_arguments(parameters, tags, description)
    from oxeo_flows.pools.kinds import ensure_stack_pool, pool_defaults, pool_target
    from oxeo_flows.stack import resolve_stack

    the_stack = resolve_stack(stack)
    root = Path(src).resolve()
    if not root.is_dir():
        state = "is a file" if root.exists() else "does not exist"
        msg = f"project directory {str(root)!r} {state}; give src= the directory of the project"
        raise ConfigError(msg)
    flow = _load_flow(root, entrypoint)
    _check_parameters(flow, parameters or {})
    from oxeo_flows._redact import refuse_loaded_secrets

    refuse_loaded_secrets(dict(parameters or {}), where="deploy_flow(parameters=)")
    pool_name, kind = pool_target(the_stack, work_pool)
    code, pull_steps = _pull_steps(the_stack, kind, root, pool_name)
    schedules = _schedules(schedule)
    ids = _BlockIds(dry_run)
    _, defaults = pool_defaults(the_stack, pool_name, kind=kind, block_ids=ids)
    variables = _deployment_variables(kind, the_stack, pool_name, job, defaults=defaults, ids=ids)
    existing = _read_deployment(f"{flow.name}/{name}")
    _check_target(existing, pool_name, the_stack, force)

    sync_report: SyncReport | None = None
    block_result: BlockResult | None = None
    if code == "s3":
        from oxeo_flows.blocks import ensure_block
        from oxeo_flows.storage import s3_bucket, storage_block_name, sync_code

        sync_report = sync_code(root, stack=the_stack, dry_run=dry_run)
        version = sync_report.digest[:12]
        block = _storage_block(the_stack, sync_report.folder, s3_bucket)
        block_name = storage_block_name(the_stack, sync_report.folder)
        block_result = ensure_block(block, block_name, dry_run=dry_run)
        if not dry_run:
            from oxeo_flows.apply._blocks import mark_block

            # The block is ours now: a later `apply` of the stack manages it without --adopt.
            mark_block(block.get_block_type_slug(), block_name)
        pull_steps = [{"oxeo_flows.steps.pull_code": {"block": block_name}}]
        source = sync_report.url
    else:
        version = _code_digest(root, the_stack)[:12]
        source = f"image:{the_stack.storage.image_code_dir}" if code == "image" else str(root)
    assert pull_steps is not None

    pool_result = ensure_stack_pool(the_stack, pool_name, kind=kind, dry_run=dry_run, block_ids=ids)
    try:
        return _register(
            flow,
            existing,
            name=name,
            entrypoint=entrypoint,
            root=root,
            pool_name=pool_name,
            variables=variables,
            parameters=dict(parameters or {}),
            schedules=schedules,
            tags=list(tags or []),
            description=description,
            version=version,
            pull_steps=pull_steps,
            dry_run=dry_run,
            common={
                "runner": kind.runner,
                "source": source,
                "sync": sync_report,
                "storage_block": block_result,
                "pool": pool_result,
                "notes": tuple(ids.notes),
            },
        )
    except OxeoFlowsError:
        raise
    except Exception as exc:
        msg = f"cannot register deployment '{flow.name}/{name}': {type(exc).__name__}: {exc}"
        raise DeployError(msg) from exc


class _BlockIds:
    """Block references for a deploy: read from the API; in a dry run, a missing one is a note."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.notes: list[str] = []

    def __call__(self, slug: str, name: str) -> str:
        from oxeo_flows.errors import BlockNotFoundError
        from oxeo_flows.pools.kinds import api_block_ids

        try:
            return api_block_ids(slug, name)
        except BlockNotFoundError as exc:
            if not self.dry_run:
                raise
            note = f"block '{slug}/{name}' does not exist yet: {exc}"
            if note not in self.notes:
                self.notes.append(note)
            return f"(missing block {slug}/{name})"


def _read_deployment(full: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            return client.read_deployment_by_name(full)
    except ObjectNotFound:
        return None
    except Exception as exc:
        msg = f"cannot read deployment {full!r} from the Prefect API: {type(exc).__name__}: {exc}"
        raise DeployError(msg) from exc


def _storage_block(stack: Stack, folder: str, factory: Any) -> Any:
    creds_name = stack.storage.credentials_block or stack.aws.credentials_block
    credentials = None
    if creds_name:
        from oxeo_flows._extras import require
        from oxeo_flows.blocks import load_block

        prefect_aws = require("prefect_aws", "aws")
        hint = (
            f"it is named by storage.credentials-block / aws.credentials-block of stack "
            f"{stack.name!r}: run `oxeo-flows apply` to create it, or save it first"
        )
        credentials = load_block(prefect_aws.AwsCredentials, creds_name, hint=hint)
    return factory(folder=folder, stack=stack, credentials=credentials)


def _register(
    flow: Any,
    existing: Any,
    *,
    name: str,
    entrypoint: str,
    root: Path,
    pool_name: str,
    variables: dict[str, Any],
    parameters: dict[str, Any],
    schedules: list[Any],
    tags: list[str],
    description: str | None,
    version: str,
    pull_steps: list[dict[str, Any]],
    dry_run: bool,
    common: dict[str, Any],
) -> DeployResult:
    from prefect.deployments.runner import RunnerDeployment

    deployment = RunnerDeployment(
        name=name,
        flow_name=flow.name,
        entrypoint=entrypoint,
        work_pool_name=pool_name,
        job_variables=variables,
        parameters=parameters,
        schedules=schedules,
        tags=tags,
        description=description,
        version=version,
        storage=_PullSteps(pull_steps, root),
    )
    deployment._set_defaults_from_flow(flow)
    desired: dict[str, Any] = {
        "entrypoint": entrypoint,
        "work_pool_name": pool_name,
        "job_variables": variables,
        "parameters": deployment.model_dump(mode="json", include={"parameters"})["parameters"],
        "tags": tags,
        "version": version,
        "description": deployment.description,
        "pull_steps": pull_steps,
        "schedules": schedules,
        "parameter_openapi_schema": deployment._parameter_openapi_schema.model_dump(
            exclude_unset=True
        ),
    }
    full = f"{flow.name}/{name}"
    if existing is None:
        action: Literal["created", "updated", "unchanged"] = "created"
        changes: dict[str, tuple[Any, Any]] = {}
        deployment_id = None
    else:
        changes = _diff(existing, desired)
        action = "updated" if changes else "unchanged"
        deployment_id = str(existing.id)
    if action != "unchanged" and not dry_run:
        deployment_id = str(deployment.apply())
    return DeployResult(
        name=full,
        action=action,
        changes=changes,
        deployment_id=deployment_id,
        work_pool=pool_name,
        version=version,
        job_variables=variables,
        dry_run=dry_run,
        **common,
    )
