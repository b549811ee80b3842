"""A `DaskTaskRunner` that does Prefect's per-task bookkeeping once per flow run instead.

Profiling prefect-dask on a 2-core machine (``benchmarks/local_runner.py``,
``benchmarks/fanout.py``) showed costs paid on every task that do not change during a flow run:

1. ``serialize_context()`` dumps the full ``Settings`` model (~70 ms a task): here the settings
   are serialised once per settings context, and workers rebuild the ``SettingsContext`` once
   per key (bounded cache);
2. serialising the flow run context re-renders its result store block (~24 ms a task): here it
   is cached per flow run context and state;
3. Dask worker threads have no ``SyncClientContext``, so Prefect's task engine built two new API
   clients per task (~28 ms of CPU each): here a worker keeps one client per settings, shared by
   its threads as in Prefect's own thread-pool runner;
4. the task, the flow-run context and the settings travelled inside every task's arguments:
   pickled by the scheduler and unpickled by the worker for each task, and walked by Dask
   looking for futures. Here they are scattered to the workers once per flow run (bounded
   cache; inline when the cluster has no worker yet) and the context travels opaque;
5. ``Task.map`` sent one Dask graph per task, each a scheduler ``update_graph`` round trip
   (~1.5 ms of client time a task here): here a map is one graph of N keys;
6. ``PrefectFutureList.result()`` gathered each state with its own round trip: the list that
   ``map`` returns waits for and gathers all of them in one call first.

Everything else is what prefect-dask does: the same task engine, states, results and futures,
one task run per task.

The module is importable (never ``__main__``), so Prefect pickles the runner by reference.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from oxeo_flows._extras import require

if TYPE_CHECKING:
    from prefect.context import SettingsContext, SyncClientContext
    from prefect.tasks import Task

__all__ = ["fast_submit_base", "serialize_task_context"]

_WORKER_CACHE_SIZE = 16
_SHARED_CACHE_SIZE = 64
_worker_settings: OrderedDict[str, SettingsContext] = OrderedDict()
_worker_clients: OrderedDict[str, SyncClientContext] = OrderedDict()
_worker_lock = threading.RLock()


def _settings_on_worker(key: str, data: dict[str, Any]) -> SettingsContext:
    """The flow's settings context on this worker, built once per key (single-flight)."""
    from prefect.context import SettingsContext

    cached = _worker_settings.get(key)
    if cached is not None:
        return cached
    with _worker_lock:
        # Built under the lock: the first tasks of a flow arrive on every worker thread at
        # once, and each build is ~0.5 s of GIL-bound work that must not be done N times.
        cached = _worker_settings.get(key)
        if cached is not None:
            return cached
        ctx = SettingsContext(**data) if data else SettingsContext.get()
        if ctx is None:  # pragma: no cover - Prefect always has a global settings context
            msg = "no Prefect settings context on this Dask worker"
            raise RuntimeError(msg)
        _worker_settings[key] = ctx
        while len(_worker_settings) > _WORKER_CACHE_SIZE:
            _worker_settings.popitem(last=False)
        return ctx


def _client_context(key: str) -> SyncClientContext:
    """The worker's Prefect API client context for the settings ``key`` (created once).

    Prefect's task engine reuses the client of the current ``SyncClientContext``; Dask worker
    threads have none, so without this every task built two new clients (~28 ms of CPU each
    here). Like Prefect's own thread-pool runner, the worker threads share one client (httpx
    clients are thread-safe); it must be called inside the flow's settings context.
    """
    from prefect.context import SyncClientContext

    ctx = _worker_clients.get(key)
    if ctx is not None:
        return ctx
    with _worker_lock:
        ctx = _worker_clients.get(key)
        if ctx is None:
            ctx = SyncClientContext()
            ctx.client.__enter__()
            _worker_clients[key] = ctx
            # Forget (without closing: another thread may still use it) the oldest clients.
            while len(_worker_clients) > _WORKER_CACHE_SIZE:
                _worker_clients.popitem(last=False)
        return ctx


class Opaque:
    """A value Dask passes through untouched (it walks dicts and lists looking for futures)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (Opaque, (self.value,))


def run_task_on_worker(
    item: dict[str, Any],
    *,
    task: Task[Any, Any],
    shared_context: Opaque,
    oxeo_settings_key: str,
    oxeo_settings: Opaque,
) -> Any:
    """Run one Prefect task on a Dask worker, inside the flow's (cached) settings context.

    ``item`` holds what differs between task runs (id, parameters, dependencies, asset
    context); the task, the flow-run context and the settings are shared by every task run of a
    flow run and reach a worker once (scattered), not with every task.
    """
    from prefect.context import SyncClientContext
    from prefect.task_engine import run_task_async, run_task_sync

    item = dict(item)
    context = dict(shared_context.value)
    context["asset_context"] = item.pop("asset_context")
    ctx = _settings_on_worker(oxeo_settings_key, oxeo_settings.value)
    with ctx.model_copy():
        client_token = SyncClientContext.__var__.set(_client_context(oxeo_settings_key))
        try:
            if task.isasync:
                return asyncio.run(
                    run_task_async(task=task, context=context, return_type="state", **item)
                )
            return run_task_sync(task=task, context=context, return_type="state", **item)
        finally:
            SyncClientContext.__var__.reset(client_token)


def serialize_task_context(
    task: Task[Any, Any],
    task_run_id: UUID,
    dependencies: dict[str, Any],
    flow_run_payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``prefect.context.serialize_context()`` without the settings (sent separately).

    Args:
        task: The task being submitted.
        task_run_id: Its task run id.
        dependencies: Its task run inputs.
        flow_run_payload: The already serialised flow run context, when the caller caches it.

    Returns:
        The context dict that Prefect's task engine hydrates on the worker.
    """
    from prefect import context as prefect_context
    from prefect.context import AssetContext, EngineContext, TagsContext, TaskRunContext

    if flow_run_payload is None:
        flow_run_context = EngineContext.get()
        flow_run_payload = flow_run_context.serialize() if flow_run_context else {}
    task_run_context = TaskRunContext.get()
    tags_context = TagsContext.get()
    deployment_var = getattr(prefect_context, "_deployment_id", None)
    params_var = getattr(prefect_context, "_deployment_parameters", None)
    deployment_id = deployment_var.get() if deployment_var is not None else None
    deployment_params = params_var.get() if params_var is not None else None
    asset_context = AssetContext.from_task_and_inputs(
        task=task, task_run_id=task_run_id, task_inputs=dependencies, copy_to_child_ctx=True
    )
    return {
        "flow_run_context": flow_run_payload,
        "task_run_context": task_run_context.serialize() if task_run_context else {},
        "tags_context": tags_context.serialize() if tags_context else {},
        "settings_context": {},
        "asset_context": asset_context.serialize(),
        "deployment_id": str(deployment_id) if deployment_id else None,
        "deployment_parameters": deployment_params,
    }


_runner_class: type[Any] | None = None


def fast_submit_base() -> type[Any]:
    """The `FastSubmitDaskTaskRunner` base class (built on first use, so prefect-dask loads lazily).

    Subclass it (also lazily) to add behaviour; its only override is ``submit``.
    """
    global _runner_class  # noqa: PLW0603 - built once, on first use
    if _runner_class is None:
        _runner_class = _build_runner_class()
    return _runner_class


def _build_runner_class() -> type[Any]:
    distributed = require("distributed", "dask")
    prefect_dask = require("prefect_dask", "dask")
    from prefect.context import EngineContext, SettingsContext
    from prefect.utilities.engine import collect_task_run_inputs_sync
    from prefect_dask.task_runners import PrefectDaskFuture

    base: Any = prefect_dask.DaskTaskRunner

    class FastSubmitDaskTaskRunner(base):  # type: ignore[misc]
        """`prefect_dask.DaskTaskRunner` with cheaper task submission (see module docs)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._settings_cache: tuple[object, str, dict[str, Any]] | None = None
            self._flow_run_cache: tuple[object, object, dict[str, Any]] | None = None
            # While ``map`` runs: the task runs that ``submit`` prepared, sent as one graph.
            self._batch: list[tuple[Any, str, dict[str, Any]]] | None = None
            self._batch_shared: dict[str, Any] = {}
            # name -> (what it was built from, the scattered future or the inline value)
            self._shared_cache: OrderedDict[tuple[str, int], tuple[tuple[Any, ...], Any]] = (
                OrderedDict()
            )
            self._scatter_ok: bool | None = None

        def duplicate(self) -> FastSubmitDaskTaskRunner:
            return type(self)(
                address=self.address,
                cluster_class=self.cluster_class,
                cluster_kwargs=self.cluster_kwargs,
                adapt_kwargs=self.adapt_kwargs,
                client_kwargs=self.client_kwargs,
                performance_report_path=self.performance_report_path,
            )

        def _settings_payload(self) -> tuple[str, dict[str, Any]]:
            ctx = SettingsContext.get()
            cached = self._settings_cache
            if cached is not None and cached[0] is ctx:
                return cached[1], cached[2]
            data = ctx.serialize() if ctx is not None else {}
            key = f"oxeo-settings-{uuid4().hex}"
            self._settings_cache = (ctx, key, data)
            return key, data

        def _flow_run_payload(self) -> dict[str, Any]:
            # Serialising the flow run context re-renders its result store block (JSON schema,
            # slugs): ~24 ms a task here. Within one flow body it does not change; a new context
            # (a nested flow) or a new flow run state invalidates the cache.
            ctx = EngineContext.get()
            if ctx is None:
                return {}
            flow_run = getattr(ctx, "flow_run", None)
            state_key = getattr(flow_run, "state_id", None)
            cached = self._flow_run_cache
            if cached is not None and cached[0] is ctx and cached[1] == state_key:
                return cached[2]
            payload = ctx.serialize()
            self._flow_run_cache = (ctx, state_key, payload)
            return payload

        def _can_scatter(self) -> bool:
            # Scattering needs a worker to hold the data: an adaptive cluster may have none
            # yet (then the shared payloads travel inline, with every task, as in prefect-dask).
            if self._scatter_ok is None:
                client = self.client  # a cluster that fails to start raises here, once
                try:
                    self._scatter_ok = bool(client.nthreads())
                except Exception:  # pragma: no cover - a scheduler that does not answer
                    self._scatter_ok = False
            return self._scatter_ok

        def _shared(self, name: str, same: tuple[Any, ...], value: Any) -> Any:
            """``value``, scattered to the workers once while ``same`` holds (else inline).

            Entries are keyed by ``name`` and the identity of ``same[0]`` (kept alive by the
            entry), so alternating between tasks scatters each once; the rest of ``same`` is
            compared by equality. At most ``_SHARED_CACHE_SIZE`` entries are kept.
            """
            key = (name, id(same[0]))
            cached = self._shared_cache.get(key)
            if cached is not None and cached[0][0] is same[0] and cached[0][1:] == same[1:]:
                self._shared_cache.move_to_end(key)
                return cached[1]
            payload: Any = value
            if self._can_scatter():
                payload = distributed.Client.scatter(self.client, value, broadcast=True, hash=False)
            self._shared_cache[key] = (same, payload)
            while len(self._shared_cache) > _SHARED_CACHE_SIZE:
                self._shared_cache.popitem(last=False)
            return payload

        def _prepare(
            self,
            task: Task[Any, Any],
            parameters: dict[str, Any],
            wait_for: Any,
            dependencies: dict[str, Any] | None,
        ) -> tuple[dict[str, Any], str, dict[str, Any]]:
            """A task run's own arguments, its Dask key, and the shared keyword arguments."""
            parameters = self._optimize_futures(parameters)
            wait_for = self._optimize_futures(wait_for) if wait_for else None
            task_run_id = uuid4()
            inputs = {
                k: collect_task_run_inputs_sync(v, future_cls=distributed.Future)
                for k, v in parameters.items()
            }
            if dependencies:
                inputs = {k: v.union(dependencies.get(k, set())) for k, v in inputs.items()}
            flow_payload = self._flow_run_payload()
            context = serialize_task_context(task, task_run_id, inputs, flow_payload)
            item = {
                "task_run_id": task_run_id,
                "parameters": parameters,
                "wait_for": wait_for,
                "dependencies": inputs,
                "asset_context": context.pop("asset_context"),
            }
            rest = {k: v for k, v in context.items() if k != "flow_run_context"}
            settings_ctx = SettingsContext.get()
            settings_key, settings = self._settings_payload()
            shared = {
                "task": self._shared("task", (task,), task),
                "shared_context": self._shared("context", (flow_payload, rest), Opaque(context)),
                "oxeo_settings_key": settings_key,
                "oxeo_settings": self._shared("settings", (settings_ctx,), Opaque(settings)),
            }
            return item, f"{task.name}-{task_run_id.hex}", shared

        def submit(
            self,
            task: Task[Any, Any],
            parameters: dict[str, Any],
            wait_for: Any = None,
            dependencies: dict[str, Any] | None = None,
        ) -> Any:
            if not self._started:
                msg = "The task runner must be started before submitting work."
                raise RuntimeError(msg)
            item, key, shared = self._prepare(task, parameters, wait_for, dependencies)
            task_run_id = item["task_run_id"]
            if self._batch is not None:
                # Inside ``map``: the Dask future is created with the others, in one graph.
                future: Any = PrefectDaskFuture(
                    wrapped_future=None,  # type: ignore[arg-type]
                    task_run_id=task_run_id,
                )
                self._batch.append((future, key, item))
                self._batch_shared = shared
                return future
            dask_future = distributed.Client.submit(
                self.client, run_task_on_worker, item, key=key, pure=False, **shared
            )
            dask_future.task_run_id = task_run_id
            return PrefectDaskFuture(wrapped_future=dask_future, task_run_id=task_run_id)

        def map(
            self,
            task: Task[Any, Any],
            parameters: dict[str, Any],
            wait_for: Iterable[Any] | None = None,
        ) -> Any:
            if self._batch is not None:  # pragma: no cover - map does not nest
                return super().map(task, parameters, wait_for)
            client = self.client  # start the cluster before preparing the batch
            self._batch = []
            try:
                futures = super().map(task, parameters, wait_for)
                batch = self._batch
            finally:
                self._batch = None
            if batch:
                dask_futures = distributed.Client.map(
                    client,
                    run_task_on_worker,
                    [item for _, _, item in batch],
                    key=[key for _, key, _ in batch],
                    pure=False,
                    **self._batch_shared,
                )
                for (future, _, item), dask_future in zip(batch, dask_futures, strict=True):
                    dask_future.task_run_id = item["task_run_id"]
                    future._wrapped_future = dask_future
            return _gathering_list_class()(futures)

    FastSubmitDaskTaskRunner.__module__ = __name__
    FastSubmitDaskTaskRunner.__qualname__ = "FastSubmitDaskTaskRunner"
    globals()["FastSubmitDaskTaskRunner"] = FastSubmitDaskTaskRunner
    return FastSubmitDaskTaskRunner


_list_class: type[Any] | None = None


def _gathering_list_class() -> type[Any]:
    """A ``PrefectFutureList`` that waits for and gathers its Dask futures in one call each."""
    global _list_class  # noqa: PLW0603 - built once, on first use
    if _list_class is not None:
        return _list_class
    import distributed
    from prefect.client.schemas.objects import State
    from prefect.futures import PrefectFutureList
    from prefect_dask.task_runners import PrefectDaskFuture

    class GatheringFutureList(PrefectFutureList):  # type: ignore[type-arg]
        """``PrefectFutureList`` whose ``wait``/``result`` fetch every state in one gather."""

        def _prefetch(self, timeout: float | None) -> None:
            pending = [
                f
                for f in self
                if isinstance(f, PrefectDaskFuture)
                and f._final_state is None
                and f.wrapped_future is not None
            ]
            if not pending:
                return
            dask_futures = [f.wrapped_future for f in pending]
            client = dask_futures[0].client
            try:
                with distributed.Client.as_current(client):
                    distributed.wait(dask_futures, timeout=timeout)  # type: ignore[no-untyped-call]
            except distributed.TimeoutError:
                pass  # the per-future path below reports the timeout as Prefect does
            done = [f for f in pending if f.wrapped_future.status == "finished"]
            if not done:
                return
            states = client.gather([f.wrapped_future for f in done], errors="skip")
            if len(states) != len(done):  # pragma: no cover - a key was lost meanwhile
                return
            for future, state in zip(done, states, strict=True):
                if isinstance(state, State):
                    future._final_state = state

        def wait(self, timeout: float | None = None) -> None:
            self._prefetch(timeout)
            super().wait(timeout)

        def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
            self._prefetch(timeout)
            return super().result(timeout=timeout, raise_on_failure=raise_on_failure)

    GatheringFutureList.__module__ = __name__
    GatheringFutureList.__qualname__ = "GatheringFutureList"
    globals()["GatheringFutureList"] = GatheringFutureList
    _list_class = GatheringFutureList
    return GatheringFutureList


def __getattr__(name: str) -> Any:
    # Lets pickle find the class by reference (module attribute lookup) in worker processes.
    if name == "FastSubmitDaskTaskRunner":
        return fast_submit_base()
    if name == "GatheringFutureList":
        return _gathering_list_class()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
