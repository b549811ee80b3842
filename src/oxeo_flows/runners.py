"""`dask_runner`: a Prefect `DaskTaskRunner` configured from the active stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oxeo_flows._extras import require
from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import DaskSection, Stack, load_stack

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

__all__ = ["dask_runner"]

_BACKENDS = ("local", "address", "gcp", "ec2")


def _resolve(
    backend: str | None, stack: Stack | str | None, overrides: dict[str, Any]
) -> tuple[Stack, DaskSection]:
    dask_overrides = dict(overrides)
    if backend is not None:
        if backend not in _BACKENDS:
            msg = f"unknown Dask backend {backend!r}; choose one of: {', '.join(_BACKENDS)}"
            raise ConfigError(msg)
        dask_overrides["backend"] = backend
    if isinstance(stack, Stack):
        if dask_overrides:
            merged = stack.dask.model_dump() | dask_overrides
            section = DaskSection.model_validate(merged)
            return stack, section
        return stack, stack.dask
    resolved = load_stack(stack, overrides={"dask": dask_overrides} if dask_overrides else None)
    return resolved, resolved.dask


def dask_runner(
    backend: str | None = None,
    *,
    stack: Stack | str | None = None,
    **overrides: Any,
) -> DaskTaskRunner:
    """A `prefect_dask.DaskTaskRunner` for the active stack's ``[dask]`` section.

    Args:
        backend: ``"local"`` (an in-process cluster), or another backend; defaults to the
            stack's ``dask.backend``.
        stack: A `Stack` or a stack name; defaults to the active stack.
        **overrides: Values of the ``[dask]`` section for this runner only (for example
            ``n_workers=4``); they take precedence over the stack and the environment.

    Returns:
        A task runner to pass to ``@flow(task_runner=...)``.

    Raises:
        ConfigError: The backend or a setting is invalid.
        MissingExtraError: ``oxeo-flows[dask]`` is not installed.

    Example:
        ```python
        from prefect import flow, task
        from oxeo_flows import dask_runner

        @task
        def double(x: int) -> int:
            return 2 * x

        @flow(task_runner=dask_runner("local"))
        def pipeline(n: int = 10) -> int:
            return sum(double.map(range(n)).result())
        ```
    """
    _stack, settings = _resolve(backend, stack, overrides)
    prefect_dask = require("prefect_dask", "dask")
    if settings.backend == "local":
        from oxeo_flows.clusters.local import local_cluster

        cluster_kwargs: dict[str, Any] = {"processes": settings.processes}
        if settings.n_workers is not None:
            cluster_kwargs["n_workers"] = settings.n_workers
        if settings.threads_per_worker is not None:
            cluster_kwargs["threads_per_worker"] = settings.threads_per_worker
        if settings.memory_limit is not None:
            cluster_kwargs["memory_limit"] = settings.memory_limit
        adapt = (
            {"minimum": settings.adapt[0], "maximum": settings.adapt[1]} if settings.adapt else None
        )
        runner: DaskTaskRunner = prefect_dask.DaskTaskRunner(
            cluster_class=local_cluster, cluster_kwargs=cluster_kwargs, adapt_kwargs=adapt
        )
        return runner
    msg = f"the {settings.backend!r} Dask backend is not available yet"
    raise ConfigError(msg)
