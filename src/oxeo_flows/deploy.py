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
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from oxeo_flows.errors import ConfigError, DeployError, OxeoFlowsError

if TYPE_CHECKING:
    from oxeo_flows.blocks import BlockResult
    from oxeo_flows.pools import PoolResult
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
    dry_run: bool = False

    def summary(self) -> str:
        """A few human-readable lines."""
        prefix = "[dry run] " if self.dry_run else ""
        lines = [f"{prefix}deployment {self.name}: {self.action} (version {self.version})"]
        if self.changes:
            lines.append("  changed: " + ", ".join(sorted(self.changes)))
        if self.sync is not None:
            lines.append(f"  code: {self.sync.summary()}")
        else:
            lines.append(f"  code: runs from {self.source}")
        if self.storage_block is not None:
            lines.append(f"  storage block {self.storage_block.slug}: {self.storage_block.action}")
        if self.pool is not None:
            lines.append(f"  work pool {self.pool.name} ({self.pool.type}): {self.pool.action}")
        return "\n".join(lines)


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
    if ":" not in entrypoint:
        msg = f"entrypoint {entrypoint!r} must be 'path/to/file.py:flow_function'"
        raise ConfigError(msg)
    file, _, func = entrypoint.rpartition(":")
    path = (root / file).resolve()
    if not path.is_file():
        msg = f"entrypoint file {file!r} does not exist under {root}"
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


def _job_variables(
    stack: Stack, runner: str, job: Any, pool_name: str
) -> tuple[dict[str, Any], Any]:
    """Return (job variables, spec object or None)."""
    if job is not None and isinstance(job, Mapping):
        return dict(job), None
    if runner == "docker":
        from oxeo_flows.docker_pool import DockerJob, docker_job, resolve_job_variables

        spec = job if job is not None else docker_job(stack=stack)
        if not isinstance(spec, DockerJob):
            msg = f"job for a docker runner must be a DockerJob or a dict, got {type(job).__name__}"
            raise ConfigError(msg)
        return resolve_job_variables(spec), spec
    if runner == "vertex":
        if job is None:
            from oxeo_flows._extras import require

            vertex = require("oxeo_flows.vertex", "gcp")
            job = vertex.vertex_job(stack=stack)
        render = getattr(job, "job_variables", None)
        if render is None:
            msg = f"job for a vertex runner must be a VertexJob or a dict, got {type(job).__name__}"
            raise ConfigError(msg)
        return dict(render()), job
    if job is not None:
        render = getattr(job, "job_variables", None)
        if render is None:
            msg = f"job must be a dict of job variables, got {type(job).__name__}"
            raise ConfigError(msg)
        return dict(render()), job
    section = stack.pools.get(pool_name)
    env = dict(getattr(section, "env", {}) or {})
    return ({"env": env} if env else {}), None


def _ensure_pool(  # noqa: PLR0917
    stack: Stack, runner: str, pool: str, spec: Any, variables: Mapping[str, Any], dry_run: bool
) -> PoolResult:
    from oxeo_flows.pools import ensure_pool

    section = stack.pools.get(pool)
    common: dict[str, Any] = {}
    if section is not None:
        common = {
            "description": section.description,
            "concurrency_limit": section.concurrency_limit,
            "adopt": section.adopt,
        }
    if runner == "docker":
        from oxeo_flows.docker_pool import DockerJob, ensure_docker_pool

        job = spec if isinstance(spec, DockerJob) else None
        return ensure_docker_pool(pool, job, stack=stack, dry_run=dry_run, **common)
    if runner == "vertex":
        from oxeo_flows.vertex import VertexJob, ensure_vertex_pool

        vjob = spec if isinstance(spec, VertexJob) else None
        return ensure_vertex_pool(pool, vjob, dry_run=dry_run, stack=stack, **common)
    defaults: dict[str, Any] = {}
    working_dir = getattr(section, "working_dir", None)
    if working_dir:
        defaults["working_dir"] = working_dir
    return ensure_pool(pool, type="process", defaults=defaults, dry_run=dry_run, **common)


def _schedules(schedule: Any) -> list[Any]:
    if schedule is None:
        return []
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    if isinstance(schedule, str):
        try:
            value: Any = CronSchedule(cron=schedule)
        except ValueError as exc:
            msg = f"schedule {schedule!r} is not a valid cron expression: {exc}"
            raise ConfigError(msg) from None
    elif isinstance(schedule, dt.timedelta | int | float) and not isinstance(schedule, bool):
        seconds = schedule.total_seconds() if isinstance(schedule, dt.timedelta) else schedule
        if seconds <= 0:
            msg = f"schedule interval must be positive, got {schedule!r}"
            raise ConfigError(msg)
        value = IntervalSchedule(interval=dt.timedelta(seconds=seconds))
    else:
        value = schedule
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
    dry_run: bool = False,
) -> DeployResult:
    """Ship a flow: sync its code, ensure storage block and work pool, register the deployment.

    Args:
        entrypoint: ``path/to/file.py:flow_function``, relative to ``src``.
        name: Deployment name.
        stack: A `Stack`, a stack name, or None for the active stack.
        work_pool: Work pool (default: the runner section's ``work-pool``, then the stack's
            ``work-pool``, then ``<stack>-<runner>``).
        job: Job settings: a `DockerJob` / `VertexJob`, or a dict of job variables. Default:
            from the stack for its runner (``docker_job()``, ``vertex_job()``).
        parameters: Default parameters of the deployment.
        schedule: A cron string, an interval (``timedelta`` or seconds) or a Prefect schedule.
        tags: Deployment tags.
        description: Deployment description (default: the flow's docstring).
        src: The project directory (default: the working directory).
        dry_run: Compare only: nothing is uploaded, saved or registered.

    Returns:
        A `DeployResult`.

    Raises:
        ConfigError: Bad entrypoint, stack or job settings.
        SyncError: The code sync failed part-way; no deployment was written.
        BlockError: The storage block could not be saved.
        PoolError: The pool could not be ensured.
        DeployError: The flow could not be loaded, or the deployment could not be registered.

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
    from oxeo_flows.stack import resolve_stack

    the_stack = resolve_stack(stack)
    root = Path(src).resolve()
    if not root.is_dir():
        msg = f"project directory {str(root)!r} does not exist"
        raise ConfigError(msg)
    flow = _load_flow(root, entrypoint)
    runner = the_stack.runner
    section_pool = {
        "docker": the_stack.docker.work_pool,
        "vertex": the_stack.vertex.work_pool,
    }.get(runner)
    pool_name = work_pool or section_pool or the_stack.default_work_pool
    variables, spec = _job_variables(the_stack, runner, job, pool_name)
    schedules = _schedules(schedule)

    sync_report: SyncReport | None = None
    block_result: BlockResult | None = None
    if the_stack.storage.bucket:
        from oxeo_flows.blocks import ensure_block
        from oxeo_flows.storage import s3_bucket, storage_block_name, sync_code

        sync_report = sync_code(root, stack=the_stack, dry_run=dry_run)
        version = sync_report.digest[:12]
        block = _storage_block(the_stack, sync_report.folder, s3_bucket)
        block_name = storage_block_name(the_stack, sync_report.folder)
        block_result = ensure_block(block, block_name, dry_run=dry_run)
        pull_steps = [{"oxeo_flows.steps.pull_code": {"block": block_name}}]
        source = sync_report.url
    else:
        version = _code_digest(root, the_stack)[:12]
        pull_steps = [{"prefect.deployments.steps.set_working_directory": {"directory": str(root)}}]
        source = str(root)

    pool_result = _ensure_pool(the_stack, runner, pool_name, spec, variables, dry_run)
    try:
        return _register(
            flow,
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
                "runner": runner,
                "source": source,
                "sync": sync_report,
                "storage_block": block_result,
                "pool": pool_result,
            },
        )
    except OxeoFlowsError:
        raise
    except Exception as exc:
        msg = f"cannot register deployment '{flow.name}/{name}': {type(exc).__name__}: {exc}"
        raise DeployError(msg) from exc


def _storage_block(stack: Stack, folder: str, factory: Any) -> Any:
    creds_name = stack.storage.credentials_block or stack.aws.credentials_block
    credentials = None
    if creds_name:
        from oxeo_flows._extras import require
        from oxeo_flows.errors import BlockError

        prefect_aws = require("prefect_aws", "aws")
        try:
            credentials = prefect_aws.AwsCredentials.load(creds_name, _sync=True)
        except ValueError as exc:
            msg = (
                f"AWS credentials block {creds_name!r} (storage.credentials-block / "
                f"aws.credentials-block of stack {stack.name!r}) does not exist"
            )
            raise BlockError(msg) from exc
    return factory(folder=folder, stack=stack, credentials=credentials)


def _register(
    flow: Any,
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
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import RunnerDeployment
    from prefect.exceptions import ObjectNotFound

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
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_deployment_by_name(full)
        except ObjectNotFound:
            existing = None
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
