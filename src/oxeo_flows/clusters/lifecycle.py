"""How a VM cluster ends on its own: idle and no-client timeouts, and workers that follow.

A flow run closes its cluster when it ends. A client killed with SIGKILL (or a lost laptop)
cannot, so the scheduler watches itself:

- ``distributed.scheduler.idle-timeout``: distributed's own; the scheduler closes after that
  long without a task to run;
- a no-client timeout: a scheduler preload (shipped as source text in the VMs' inherited dask
  config, so the image needs nothing of ours) closes the scheduler when no client has been
  connected for that long;
- workers get a ``death_timeout`` (they exit if they cannot reach a scheduler for that long,
  e.g. one that never came up), and a worker whose scheduler closes exits with it.

When the scheduler (or a worker) process exits, dask-cloudprovider's cloud-init shuts the VM
down (``auto_shutdown``): GCE VMs are TERMINATED, EC2 instances terminated.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_NO_CLIENT_TIMEOUT",
    "NO_CLIENT_PRELOAD",
    "lifecycle_config",
    "check_nanny",
    "lifecycle_kwargs",
]

#: Seconds a scheduler may run no task before it closes (``dask.idle-timeout``).
DEFAULT_IDLE_TIMEOUT = 900.0
#: Seconds a scheduler may have no client before it closes (``dask.no-client-timeout``).
DEFAULT_NO_CLIENT_TIMEOUT = 900.0

#: The scheduler preload (source text: distributed writes it to a file and imports it).
NO_CLIENT_PRELOAD = '''\
"""oxeo-flows: close the scheduler when no client has been connected for a while."""
import logging
import time

import dask.config
from tornado.ioloop import PeriodicCallback

logger = logging.getLogger("distributed.scheduler")


def dask_setup(scheduler):
    timeout = dask.config.get("oxeo-flows.no-client-timeout", None)
    if not timeout:
        return
    timeout = float(timeout)
    state = {"since": time.monotonic()}

    def check():
        if scheduler.status.name in ("closing", "closed"):
            return
        if any(name != "fire-and-forget" for name in scheduler.clients):
            state["since"] = time.monotonic()
            return
        if time.monotonic() - state["since"] > timeout:
            logger.warning(
                "oxeo-flows: no client for %.0f s (no-client-timeout); closing", timeout
            )
            callback.stop()
            scheduler._ongoing_background_tasks.call_soon(
                scheduler.close, reason="oxeo-flows-no-client-timeout"
            )

    callback = PeriodicCallback(check, min(1000.0, timeout * 250.0))
    scheduler.periodic_callbacks["oxeo-flows-no-client-timeout"] = callback
    callback.start()
'''


def lifecycle_config(
    *, idle_timeout: float | None, no_client_timeout: float | None, preload: list[str]
) -> dict[str, Any]:
    """The dask config the VMs inherit for the idle and no-client timeouts.

    Args:
        idle_timeout: Seconds without tasks before the scheduler closes (None: never).
        no_client_timeout: Seconds without a client before the scheduler closes (None: never).
        preload: The scheduler preloads already configured (kept, ours appended).

    Returns:
        A nested config dict (``distributed.scheduler.*``, ``oxeo-flows.*``).
    """
    out: dict[str, Any] = {}
    scheduler: dict[str, Any] = {}
    if idle_timeout:
        scheduler["idle-timeout"] = f"{idle_timeout:g}s"
    if no_client_timeout:
        scheduler["preload"] = [*preload, NO_CLIENT_PRELOAD]
        out["oxeo-flows"] = {"no-client-timeout": float(no_client_timeout)}
    if scheduler:
        out["distributed"] = {"scheduler": scheduler}
    return out


def check_nanny(nanny: bool, *, tls: bool, delivery: str) -> None:
    """Raise `ConfigError` for Nanny-less workers whose VMs do not run `oxeo_flows.dask_vm`.

    Without a Nanny, the worker's environment (``PYTHONHASHSEED`` and the rest of the Nanny's
    pre-spawn environment, so that every worker hashes alike) is set by ``dask_vm``, which
    runs with the per-cluster TLS secrets only.
    """
    if nanny or (tls and delivery == "secret"):
        return
    from oxeo_flows.errors import ConfigError

    why = "TLS is off" if not tls else f"dask.tls.vm-certificates is {delivery!r}"
    msg = (
        f"dask.nanny = false needs the VMs to read their TLS from a per-cluster secret, and "
        f'{why}: keep dask.nanny = true, or use TLS with vm-certificates = "secret" (the '
        "default); without a Nanny nothing on the VM would give the worker the Nanny's "
        "environment (PYTHONHASHSEED: every worker must hash alike)"
    )
    raise ConfigError(msg)


def lifecycle_kwargs(settings: Any, *, tls: bool) -> dict[str, Any]:
    """The cluster factory keywords of a ``[dask]`` section's lifecycle settings.

    Args:
        settings: A `DaskSection`.
        tls: Whether the cluster uses TLS (for `check_nanny`).

    Raises:
        ConfigError: ``nanny = false`` without per-cluster TLS secrets (`check_nanny`).

    Returns:
        ``idle_timeout``, ``no_client_timeout`` (0 turns one off), ``parallel_boot`` and
        ``nanny``.
    """
    check_nanny(settings.nanny, tls=tls, delivery=settings.tls.vm_certificates)
    idle = settings.idle_timeout
    no_client = settings.no_client_timeout
    return {
        "idle_timeout": DEFAULT_IDLE_TIMEOUT if idle is None else (idle or None),
        "no_client_timeout": (
            DEFAULT_NO_CLIENT_TIMEOUT if no_client is None else (no_client or None)
        ),
        "parallel_boot": settings.parallel_boot,
        "nanny": settings.nanny,
    }
