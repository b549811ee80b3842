"""A Nanny worker VM's forkserver, started first so the worker process is ready sooner.

A Nanny starts its worker in a new interpreter (``multiprocessing`` spawn), which imports
``distributed`` again once the Nanny is up: on a VM's first start that second interpreter is
on the path to the worker joining. `oxeo_flows.dask_vm` instead starts ``multiprocessing``'s
forkserver before anything else, with ``distributed`` preloaded, so that the worker's
interpreter starts and imports while the Nanny's does; the Nanny then forks its worker from
it (``distributed.worker.multiprocessing-method = forkserver``).

A forked interpreter keeps the environment it was started with, and two variables count at
interpreter start: ``PYTHONHASHSEED`` (the Nanny sets 6640 unless configured, so that every
worker hashes alike) and glibc's ``MALLOC_TRIM_THRESHOLD_``. The forkserver starts with
``distributed``'s default ``pre-spawn-environ`` (and any of those variables already set); once
``distributed`` has loaded the image's dask config, `adopt` compares that with the
``pre-spawn-environ`` the Nanny computes. If they differ, or the image's dask config chose a
``multiprocessing-method``, the forkserver is stopped and the Nanny spawns as usual.

The forkserver starts before the VM's TLS material is read and never holds it: a worker gets
its config through its process pipe, as with spawn.

A process that runs ``distributed.Worker`` itself (a worker VM with ``dask.nanny = false``, a
Vertex worker replica) gets no Nanny's environment: `reexec_env` says what to re-execute it
with (the same variables, so that it hashes like every other worker) before anything is
imported, `recheck_env` once the image's dask config is loaded, and `reexec` does it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Started",
    "adopt",
    "plain_worker",
    "recheck_env",
    "reexec",
    "reexec_env",
    "start",
]

#: ``distributed.nanny.pre-spawn-environ`` as distributed ships it, and the Nanny's seed.
DEFAULT_PRE_SPAWN = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONHASHSEED": "6640",
}
_METHOD_ENV = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


@dataclass(frozen=True)
class Started:
    """A forkserver `start` launched.

    Attributes:
        pid: Its process id.
        env: The environment it was started with.
        before: The values the variables `start` set had before (None: unset).
    """

    pid: int
    env: dict[str, str]
    before: dict[str, str | None]


#: Set (to the keys it added) in the environment `reexec_env` re-executes with.
_SET_ENV = "OXEO_DASK_VM_PRE_SPAWN"


def _spec_class(args: list[str]) -> str:
    """The ``cls`` that ``distributed.cli.dask_spec ... --spec JSON`` starts ('' if none)."""
    if not args or args[0] != "distributed.cli.dask_spec" or "--spec" not in args[:-1]:
        return ""
    try:
        spec = json.loads(args[args.index("--spec") + 1])
    except ValueError:
        return ""
    return str(spec.get("cls", "")) if isinstance(spec, dict) else ""


def _nanny_spec(args: list[str]) -> bool:
    """Whether ``distributed.cli.dask_spec ... --spec JSON`` starts a Nanny."""
    return _spec_class(args).endswith("Nanny")


def plain_worker(args: list[str]) -> bool:
    """Whether ``args`` (``MODULE ARGS``) start a ``distributed.Worker`` without a Nanny."""
    return _spec_class(args).endswith("Worker")


def _missing(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The `DEFAULT_PRE_SPAWN` values of the variables ``environ`` leaves unset."""
    out: dict[str, str] = {}
    for key, value in DEFAULT_PRE_SPAWN.items():
        current = environ.get(key)
        if current in (None, "") or (key == "PYTHONHASHSEED" and current == "0"):
            out[key] = value
    return out


def reexec_env() -> dict[str, str] | None:
    """The environment to re-execute a Nanny-less worker's process with, or None.

    Call it first thing in a process that will run ``distributed.Worker`` itself.

    Returns:
        The whole new environment when this process lacks variables of the Nanny's pre-spawn
        environment and was not re-executed yet; None otherwise.
    """
    if os.environ.get(_SET_ENV) is not None:
        return None
    added = _missing(os.environ)
    if not added:
        return None
    return {**os.environ, **added, _SET_ENV: ",".join(sorted(added))}


def recheck_env() -> dict[str, str] | None:
    """What to re-execute with if the image's dask config wants another pre-spawn environment.

    Call it once ``distributed`` is imported, after `reexec_env`. A second re-execution is rare
    (an image whose dask config sets ``distributed.nanny.pre-spawn-environ``) and happens once
    at most.

    Returns:
        The new environment, or None when the process has what the config asks for.
    """
    added = os.environ.get(_SET_ENV)
    if added is None or added.endswith(";checked"):
        return None
    import dask.config

    original = {k: v for k, v in os.environ.items() if k not in added.split(",")}
    wanted = _pre_spawn_env(dask.config, original)
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        return None
    _say(f"re-executing with the image's pre-spawn-environ ({sorted(wanted)})")
    return {**original, **wanted, _SET_ENV: f"{','.join(sorted(wanted))};checked"}


def reexec(module: str, args: list[str], env: dict[str, str] | None) -> None:
    """Replace this process by ``python -m MODULE ARGS`` with ``env`` (None: do nothing)."""
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    # The same interpreter and module, argv as given: no shell, nothing from the environment.
    os.execve(sys.executable, [sys.executable, "-m", module, *args], env)  # noqa: S606


def _say(message: str) -> None:
    print(f"oxeo-flows dask_vm: {message}", file=sys.stderr, flush=True)


def start(args: list[str]) -> Started | None:
    """Start the forkserver for the Nanny that ``args`` (``MODULE ARGS``) runs.

    Returns:
        What was started; None for a scheduler, a Nanny-less worker, a method chosen in the
        environment, or a start that failed (the Nanny then spawns, as usual).
    """
    if not _nanny_spec(args) or os.environ.get(_METHOD_ENV):
        return None
    before: dict[str, str | None] = {}
    for key, value in _missing(os.environ).items():
        before[key] = os.environ.get(key)
        os.environ[key] = value
    try:
        import multiprocessing
        import multiprocessing.forkserver

        multiprocessing.get_context("forkserver").set_forkserver_preload(["distributed"])
        multiprocessing.forkserver.ensure_running()
        pid = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    except Exception as exc:
        _restore(before)
        _say(f"no forkserver ({type(exc).__name__}: {exc}); the Nanny spawns its worker")
        return None
    return Started(pid=int(pid), env=dict(os.environ), before=before)


def _restore(before: dict[str, str | None]) -> None:
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _pre_spawn_env(config: Any, environ: dict[str, str]) -> dict[str, str]:
    """``distributed.nanny.pre-spawn-environ`` as the Nanny computes it from ``environ``."""
    values = config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    env = {k: environ.get(k, str(v)) for k, v in values.items() if v is not None}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"
    return env


def adopt(started: Started | None) -> bool:
    """Make the Nanny fork from ``started``, or stop it (see the module docs).

    Call it once ``distributed`` is imported (its config loaded), before the Nanny starts.

    Returns:
        Whether the Nanny will use the forkserver.
    """
    if started is None:
        return False
    import dask.config

    chosen = dask.config.collect().get("distributed", {}).get("worker", {})
    method = chosen.get("multiprocessing-method", chosen.get("multiprocessing_method"))
    # What the Nanny would give a spawned worker, from the environment before `start`.
    original = dict(os.environ)
    for key, value in started.before.items():
        if value is None:
            original.pop(key, None)
        else:
            original[key] = value
    wanted = _pre_spawn_env(dask.config, original)
    differs = sorted(k for k, v in wanted.items() if started.env.get(k) != v)
    if method not in (None, "forkserver") or differs:
        why = f"the dask config sets {method!r}" if method else f"pre-spawn-environ {differs}"
        _say(f"no forkserver ({why}); the Nanny spawns its worker")
        _restore(started.before)
        with contextlib.suppress(OSError):
            os.kill(started.pid, signal.SIGTERM)
        return False
    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    return True
