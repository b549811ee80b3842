"""`OxeoDaskTaskRunner`: Prefect's ``DaskTaskRunner`` with a start deadline and sizing.

The class derives from ``prefect_dask.DaskTaskRunner``, which this module must not import at
import time; it is built on first attribute access
(``oxeo_flows.clusters.runner.OxeoDaskTaskRunner``), so that it still pickles by reference.
"""

from __future__ import annotations

import logging
from typing import Any

from oxeo_flows._extras import require
from oxeo_flows.clusters._deadline import Deadline, run_in_thread, scheduler_timeout_message
from oxeo_flows.errors import ClusterStartTimeout, ConfigError
from oxeo_flows.stack import SIZING_TARGETS

__all__ = ["OxeoDaskTaskRunner", "apply_parameters", "runner_class"]  # noqa: F822 - lazy

logger = logging.getLogger("oxeo_flows.dask")

_CLASS: dict[str, type[Any]] = {}

_INTS = frozenset({"n_workers", "threads_per_worker", "ngpus", "adapt_min", "adapt_max"})


def check_parameter_targets(backend: str, parameters: dict[str, str]) -> None:
    """Raise `ConfigError` for sizing settings the backend does not have."""
    allowed = (
        {*SIZING_TARGETS.get(backend, {}), "adapt_min", "adapt_max"}
        if backend != "address"
        else set()
    )
    for setting in parameters:
        if setting not in allowed:
            msg = (
                f"dask.parameters.{setting.replace('_', '-')} does not apply to the {backend!r} "
                f"backend; it can size: "
                f"{', '.join(sorted(allowed)) or 'nothing (an existing scheduler)'}"
            )
            raise ConfigError(msg)


def apply_parameters(
    backend: str,
    mapping: dict[str, str],
    flow_parameters: dict[str, Any],
    cluster_kwargs: dict[str, Any],
    adapt_kwargs: dict[str, Any],
) -> None:
    """Size a cluster from the running flow's parameters (in place).

    Args:
        backend: The Dask backend.
        mapping: Setting -> flow parameter name (``dask.parameters``).
        flow_parameters: The flow run's parameters.
        cluster_kwargs: Cluster factory keywords to update.
        adapt_kwargs: ``cluster.adapt`` keywords to update.

    Raises:
        ConfigError: A parameter value has the wrong type.
    """
    for setting, param in mapping.items():
        if param not in flow_parameters or flow_parameters[param] is None:
            continue
        value = flow_parameters[param]
        if setting in _INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = (
                    f"flow parameter {param!r} sizes dask {setting} (dask.parameters) and must be "
                    f"a non-negative integer, got {value!r}"
                )
                raise ConfigError(msg)
        elif not isinstance(value, str):
            msg = (
                f"flow parameter {param!r} sizes dask {setting} and must be a string, got {value!r}"
            )
            raise ConfigError(msg)
        if setting == "adapt_min":
            adapt_kwargs["minimum"] = value
        elif setting == "adapt_max":
            adapt_kwargs["maximum"] = value
        else:
            cluster_kwargs[SIZING_TARGETS[backend][setting]] = value
    low, high = adapt_kwargs.get("minimum"), adapt_kwargs.get("maximum")
    if low is not None and high is not None and low > high:
        msg = f"adaptive minimum {low} is greater than maximum {high} (from the flow's parameters)"
        raise ConfigError(msg)


def _flow_parameters() -> dict[str, Any]:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None:
        return {}
    return dict(ctx.parameters or {})


def runner_class() -> type[Any]:
    """The `OxeoDaskTaskRunner` class (built on first use)."""
    if "runner" in _CLASS:
        return _CLASS["runner"]
    require("prefect_dask", "dask")
    # The lead's fast-submit runner (a prefect_dask.DaskTaskRunner) is the base.
    from oxeo_flows._task_runner import fast_submit_base

    base: Any = fast_submit_base()

    class OxeoDaskTaskRunner(base):  # type: ignore[misc]
        """A ``DaskTaskRunner`` whose cluster start or scheduler connect has a deadline.

        Attributes:
            backend: ``local``, ``address``, ``gcp`` or ``ec2``.
            start_timeout: Seconds for the cluster to start or the scheduler to answer.
            tls: ``[dask.tls]`` settings (file paths and secret names only, never material).
            stack_name: Stack whose secret sources load TLS secrets.
            parameters: Sizing settings read from the flow run's parameters.
        """

        def __init__(
            self,
            *,
            backend: str = "local",
            start_timeout: float = 120.0,
            tls: dict[str, Any] | None = None,
            stack_name: str | None = None,
            parameters: dict[str, str] | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.backend = backend
            self.start_timeout = start_timeout
            self.tls = dict(tls or {})
            self.stack_name = stack_name
            self.parameters = dict(parameters or {})
            self._oxeo_owned = False
            self._oxeo_security: Any = None
            self._oxeo_runtime_address = False  # set by a reused cluster, not a setting

        def _oxeo_settings(self) -> dict[str, Any]:
            """The constructor arguments: settings only, never a connection or TLS material.

            The ``security`` this runner added to ``client_kwargs`` when it connected (it holds
            the client's private key) is left out; a copy loads it again when it connects.
            """
            client_kwargs = dict(self.client_kwargs)
            ours = getattr(self, "_oxeo_security", None)
            if ours is not None and client_kwargs.get("security") is ours:
                del client_kwargs["security"]
            return {
                "backend": self.backend,
                "start_timeout": self.start_timeout,
                "tls": self.tls,
                "stack_name": self.stack_name,
                "parameters": self.parameters,
                "address": None if self._oxeo_runtime_address else self.address,
                "cluster_class": self.cluster_class,
                "cluster_kwargs": self.cluster_kwargs,
                "adapt_kwargs": self.adapt_kwargs,  # type: ignore[has-type]
                "client_kwargs": client_kwargs,
                "performance_report_path": self.performance_report_path,
            }

        def duplicate(self) -> Any:
            """A new runner with the same settings (Prefect calls this per flow run)."""
            return type(self)(**self._oxeo_settings())

        def __reduce__(self) -> tuple[Any, ...]:
            # Pickled (by Prefect, with the flow) as its settings, like `duplicate`: a live
            # client, cluster or the client's TLS key never travels; a copy connects anew.
            return (_rebuild, (type(self), self._oxeo_settings()))

        def __eq__(self, other: object) -> bool:
            return (
                super().__eq__(other)
                and isinstance(other, OxeoDaskTaskRunner)
                and (self.backend, self.start_timeout, self.tls, self.stack_name, self.parameters)
                == (
                    other.backend,
                    other.start_timeout,
                    other.tls,
                    other.stack_name,
                    other.parameters,
                )
            )

        __hash__ = None  # type: ignore[assignment]

        def __exit__(self, *args: Any) -> None:
            cluster = self._cluster if self._oxeo_owned else None  # type: ignore[has-type]
            try:
                super().__exit__(*args)
            finally:
                if cluster is not None:
                    name = getattr(getattr(cluster, "_plan", None), "name", None) or getattr(
                        cluster, "name", type(cluster).__name__
                    )
                    self.logger.info("Closed Dask cluster %s (%s backend)", name, self.backend)

        @property
        def client(self) -> Any:
            if self._client is None and self._cluster is None:  # type: ignore[has-type]
                if self.address:
                    self._oxeo_connect()
                else:
                    self._oxeo_start_cluster()
            return super().client

        def _oxeo_connect(self) -> None:
            from oxeo_flows.clusters.address import probe_scheduler
            from oxeo_flows.clusters.tls import client_security
            from oxeo_flows.stack import DaskTlsSection

            deadline = Deadline(self.start_timeout)
            security = None
            if self.tls:
                section = DaskTlsSection.model_validate(self.tls)
                security = client_security(section, stack=self.stack_name)
            stack = self.stack_name or "active"
            hint = f"Configured as dask.address (backend 'address', stack {stack})."
            probe_scheduler(self.address, timeout=self.start_timeout, security=security, hint=hint)
            if security is not None:
                self._oxeo_security = security
                self.client_kwargs["security"] = security
            self.client_kwargs.setdefault("timeout", max(deadline.remaining(), 1.0))

        def _oxeo_start_cluster(self) -> None:
            kwargs = dict(self.cluster_kwargs)
            adapt = dict(self.adapt_kwargs)  # type: ignore[has-type]
            if self.parameters:
                apply_parameters(self.backend, self.parameters, _flow_parameters(), kwargs, adapt)
            if adapt:
                if "minimum" in adapt and "n_workers" in kwargs:
                    kwargs["n_workers"] = max(kwargs["n_workers"], adapt["minimum"])
                self.adapt_kwargs = adapt
            cls = self.resolved_cluster_class or self.cluster_class
            if isinstance(cls, str):
                from prefect.utilities.importtools import from_qualified_name

                cls = from_qualified_name(cls)
            if kwargs.get("reuse") and self.backend in ("gcp", "ec2"):
                self._oxeo_reuse(cls, kwargs)
                return
            if self.backend in ("gcp", "ec2", "vertex"):
                # These factories enforce the deadline themselves, and clean up after it.
                kwargs.setdefault("start_timeout", self.start_timeout)
                cluster = cls(**kwargs)
            else:
                cluster = _start_local(cls, kwargs, self.start_timeout)
            self._cluster = self._exit_stack.enter_context(cluster)
            self._oxeo_owned = True

        def _oxeo_reuse(self, cls: Any, kwargs: dict[str, Any]) -> None:
            """Connect to the running named cluster, or start it and let it outlive the run."""
            from oxeo_flows.clusters.address import probe_scheduler
            from oxeo_flows.clusters.reuse import detach, find_reusable

            deadline = Deadline(self.start_timeout)
            name = kwargs["cluster_name"]
            found = find_reusable(self.backend, kwargs)
            if found is not None:
                address, security = found.address, found.security
                self.logger.info("Connecting to the running Dask cluster %s at %s", name, address)
            else:
                kwargs.setdefault("start_timeout", self.start_timeout)
                address, security = detach(cls(**kwargs))
                self.logger.info(
                    "Started Dask cluster %s at %s; it stays up after this flow run (it ends "
                    "by dask.idle-timeout or `oxeo-flows clusters stop %s`)",
                    name,
                    address,
                    name,
                )
            hint = (
                f"The reusable Dask cluster {name!r} ({self.backend}). If its scheduler is gone, "
                f"run `oxeo-flows clusters stop {name}` and start the flow again."
            )
            probe_scheduler(
                address, timeout=max(deadline.remaining(), 1.0), security=security, hint=hint
            )
            self._oxeo_security = security
            self.client_kwargs["security"] = security
            self.client_kwargs.setdefault("timeout", max(deadline.remaining(), 1.0))
            self.address = address
            self._oxeo_runtime_address = True

    OxeoDaskTaskRunner.__module__ = __name__
    OxeoDaskTaskRunner.__qualname__ = "OxeoDaskTaskRunner"
    _CLASS["runner"] = OxeoDaskTaskRunner
    return OxeoDaskTaskRunner


def _rebuild(cls: type[Any], settings: dict[str, Any]) -> Any:
    """Unpickle an `OxeoDaskTaskRunner` from its settings."""
    return cls(**settings)


def _start_local(cls: Any, kwargs: dict[str, Any], timeout: float) -> Any:
    """Start an in-process cluster within ``timeout``; a late one is closed when it arrives."""
    state: dict[str, bool] = {"abandoned": False}

    def start() -> Any:
        cluster = cls(**kwargs)
        if state["abandoned"]:
            cluster.close()
        return cluster

    try:
        return run_in_thread(start, timeout=timeout, name="oxeo-dask-start")
    except TimeoutError as exc:
        state["abandoned"] = True
        msg = scheduler_timeout_message(
            "(local cluster)", timeout=timeout, what="Local Dask cluster", cause="still starting"
        )
        raise ClusterStartTimeout(msg) from exc


def __getattr__(name: str) -> Any:
    if name == "OxeoDaskTaskRunner":
        return runner_class()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
