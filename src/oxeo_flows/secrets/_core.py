"""The secret chain: stack resolution, cache, single-flight, retries and error reporting.

Resolution order of a plain name is the stack's ``secrets.sources`` (or the ``sources``
argument): each source is asked in turn; *not found* moves on to the next one, a transient
failure is retried with bounded exponential backoff, and any other failure stops the chain
with `SecretAccessError` / `SecretIntegrityError` (there is never a silent fallback to a
later source). An explicit reference (``gcp://...``) asks only the source it names.

Values from remote sources are cached per process, keyed by (source, name, version) and the
settings that decide where the source reads (project, endpoint, region...), for
``secrets.cache-ttl`` seconds; *not found* answers are remembered for at most 10 seconds. The
environment is always read live. Concurrent lookups of the same key, from threads and asyncio
tasks alike, share one backend call.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import random
import threading
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from pydantic import SecretStr

from oxeo_flows._redact import register_secret_value
from oxeo_flows.errors import ConfigError, SecretAccessError, SecretNotFoundError
from oxeo_flows.secrets._base import (
    SOURCE_NAMES,
    Fetched,
    Lookup,
    SecretRef,
    SourceModule,
    SourceName,
    SourceNotFound,
    SourceTransient,
    parse_secret_ref,
)
from oxeo_flows.secrets._logging import fetching_secret, install_log_filter
from oxeo_flows.secrets._states import install_state_redaction

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = [
    "LoadedSecret",
    "aload_secret",
    "aresolve_secret",
    "clear_secret_cache",
    "load_secret",
    "resolve_secret",
]

NEGATIVE_TTL = 10.0

_MODULES: dict[str, str] = {
    "env": "oxeo_flows.secrets.env",
    "prefect": "oxeo_flows.secrets.prefect_block",
    "gcp": "oxeo_flows.secrets.gcp",
    "aws": "oxeo_flows.secrets.aws",
}


@dataclass(frozen=True, slots=True)
class LoadedSecret:
    """A loaded secret and where it came from.

    Attributes:
        value: The value (a `SecretStr`: printing it shows ``**********``).
        source: The source that answered (``env``, ``prefect``, ``gcp``, ``aws``).
        where: Where in that source, e.g. ``projects/p/secrets/n/versions/latest``.
        tried: What each earlier source in the chain said (each had no such secret).
    """

    value: SecretStr
    source: str
    where: str
    tried: tuple[tuple[str, str], ...] = ()


# ----------------------------------------------------------------------------- state

_lock = threading.Lock()
# key -> (expires at (monotonic), outcome)
_cache: dict[tuple[Hashable, ...], tuple[float, Fetched | SourceNotFound]] = {}
_inflight: dict[tuple[Hashable, ...], Future[Fetched | SourceNotFound]] = {}
_executor: ThreadPoolExecutor | None = None
_parse = functools.lru_cache(maxsize=1024)(parse_secret_ref)


def clear_secret_cache() -> None:
    """Forget every cached secret value and not-found answer, and re-read the stack next time.

    Lookups already under way finish normally. Values already loaded stay masked in logs.
    """
    with _lock:
        _cache.clear()
        from oxeo_flows.stack import forget_stacks

        forget_stacks()


_loaded_modules: dict[str, SourceModule] = {}


def _module(source: str) -> SourceModule:
    mod = _loaded_modules.get(source)
    if mod is None:
        mod = cast("SourceModule", importlib.import_module(_MODULES[source]))
        _loaded_modules[source] = mod
    return mod


def _executor_() -> ThreadPoolExecutor:
    global _executor  # noqa: PLW0603 - created on first async lookup
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="oxeo-secrets")
        return _executor


# ----------------------------------------------------------------------------- planning


def _plan(
    name: str, sources: Sequence[str] | None, version: str, stack: Stack
) -> tuple[SecretRef, list[Lookup], str]:
    ref = _parse(name, version=version)
    if ref.source is not None:
        lookup = Lookup(
            source=ref.source,
            name=ref.name,
            version=ref.version,
            project=ref.project,
            json_key=ref.json_key,
            explicit=True,
        )
        return ref, [lookup], f"the reference {name!r}"
    if sources is None:
        chosen: Sequence[str] = stack.secrets.sources
        origin = ""  # described only if an error needs it (see _origin)
    else:
        if isinstance(sources, str):
            sources = [sources]
        chosen = list(sources)
        origin = "the sources argument"
        bad = [s for s in chosen if s not in SOURCE_NAMES]
        if bad or not chosen:
            msg = (
                f"unknown secret source(s) {bad} in {origin}; valid sources are "
                f"{list(SOURCE_NAMES)}"
                if bad
                else "the sources argument is empty; give at least one of "
                f"{list(SOURCE_NAMES)} or leave it out to use the stack's secrets.sources"
            )
            raise ConfigError(msg)
    lookups = [
        Lookup(source=cast("SourceName", s), name=ref.name, version=ref.version) for s in chosen
    ]
    return ref, lookups, origin


def _not_found(
    ref: SecretRef, origin: str, tried: list[tuple[str, str]], stack: Stack
) -> SecretNotFoundError:
    origin = origin or stack.describe("secrets", "sources")
    lines = "\n".join(f"  - {source}: {reason}" for source, reason in tried)
    if ref.source is None:
        fix = (
            "Create it in one of these sources, or change the sources "
            "(secrets.sources in the stack, or the sources argument)."
        )
        msg = (
            f"Secret {str(ref)!r} (version {ref.version!r}) was not found. Sources tried, "
            f"in order, from {origin}:\n{lines}\n{fix}"
        )
    else:
        msg = f"Secret {str(ref)!r} (version {ref.version!r}) was not found:\n{lines}"
    return SecretNotFoundError(msg)


# ----------------------------------------------------------------------------- fetching


def _fetch_with_retries(
    lookup: Lookup, mod: SourceModule, stack: Stack
) -> Fetched | SourceNotFound:
    cfg = stack.secrets
    attempt = 0
    install_log_filter(rescan=True)
    while True:
        try:
            with fetching_secret():
                fetched = mod.fetch(lookup, stack)
        except SourceNotFound as exc:
            return exc
        except SourceTransient as exc:
            if attempt >= cfg.retries:
                msg = (
                    f"{lookup.source}: {exc.reason}; still failing after {attempt + 1} "
                    f"attempt(s) (secrets.retries = {cfg.retries}). Check that the service is "
                    "reachable, or raise secrets.retries."
                )
                raise SecretAccessError(msg) from exc
            delay = min(cfg.retry_max_delay, cfg.retry_initial_delay * (2**attempt))
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
            attempt += 1
            continue
        protect_value(fetched.value)
        return fetched


def protect_value(value: str) -> None:
    """Mask ``value`` from now on in every log record and in Prefect run states.

    What every loaded secret goes through; for values a process obtains another way (e.g.
    the Vertex entrypoint reading the Prefect API key).

    Args:
        value: The secret value.
    """
    register_secret_value(value)
    install_log_filter()
    install_state_redaction()


def _key(lookup: Lookup, mod: SourceModule, stack: Stack) -> tuple[Hashable, ...]:
    return (
        lookup.source,
        lookup.name,
        lookup.version,
        lookup.project,
        lookup.json_key,
        mod.identity(lookup, stack),
    )


def _cached(key: tuple[Hashable, ...]) -> Fetched | SourceNotFound | None:
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    return None


def _claim(
    key: tuple[Hashable, ...],
) -> tuple[Fetched | SourceNotFound | None, Future[Fetched | SourceNotFound], bool]:
    """Return (cached outcome, future, am I the leader) under the lock."""
    with _lock:
        hit = _cached(key)
        if hit is not None:
            return hit, Future(), False
        fut = _inflight.get(key)
        if fut is not None:
            return None, fut, False
        fut = Future()
        fut.set_running_or_notify_cancel()  # nobody can cancel the shared call
        _inflight[key] = fut
        return None, fut, True


def _lead(
    key: tuple[Hashable, ...],
    fut: Future[Fetched | SourceNotFound],
    lookup: Lookup,
    mod: SourceModule,
    stack: Stack,
) -> None:
    try:
        outcome = _fetch_with_retries(lookup, mod, stack)
    except BaseException as exc:
        with _lock:
            _inflight.pop(key, None)
        fut.set_exception(exc)
        return
    ttl = stack.secrets.cache_ttl
    if isinstance(outcome, SourceNotFound):
        ttl = min(ttl, NEGATIVE_TTL)
    with _lock:
        if ttl > 0:
            _cache[key] = (time.monotonic() + ttl, outcome)
        _inflight.pop(key, None)
    fut.set_result(outcome)


def _get(lookup: Lookup, stack: Stack) -> Fetched | SourceNotFound:
    mod = _module(lookup.source)
    if not mod.CACHEABLE:
        return _fetch_with_retries(lookup, mod, stack)
    key = _key(lookup, mod, stack)
    hit = _cached(key)
    if hit is not None:
        return hit
    hit, fut, leader = _claim(key)
    if hit is not None:
        return hit
    if leader:
        _lead(key, fut, lookup, mod, stack)
    return fut.result()


async def _aget(lookup: Lookup, stack: Stack) -> Fetched | SourceNotFound:
    mod = _module(lookup.source)
    if not mod.CACHEABLE:
        return _fetch_with_retries(lookup, mod, stack)
    key = _key(lookup, mod, stack)
    hit = _cached(key)
    if hit is not None:
        return hit
    hit, fut, leader = _claim(key)
    if hit is not None:
        return hit
    if leader:
        # Carry the caller's context (Prefect settings and run contexts are contextvars).
        context = contextvars.copy_context()
        _executor_().submit(context.run, _lead, key, fut, lookup, mod, stack)
    return await asyncio.shield(asyncio.wrap_future(fut))


# ----------------------------------------------------------------------------- public


def resolve_secret(
    name: str,
    *,
    sources: Sequence[str] | None = None,
    version: str = "latest",
    stack: Stack | str | None = None,
) -> LoadedSecret:
    """Like `load_secret`, but also say which source answered.

    Args:
        name: A plain name or a reference (see `load_secret`).
        sources: Sources to ask in order, instead of the stack's ``secrets.sources``.
        version: Version to read (``latest`` by default).
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The value with its source and location.

    Raises:
        SecretNotFoundError: No source has it; the message lists what each source said.
        SecretAccessError: A source refused or kept failing; the chain stopped there.
        SecretIntegrityError: The payload failed its checksum.
        ConfigError: The name, sources or stack are invalid.
    """
    from oxeo_flows.stack import resolve_stack

    resolved = resolve_stack(stack)
    ref, lookups, origin = _plan(name, sources, version, resolved)
    tried: list[tuple[str, str]] = []
    for lookup in lookups:
        outcome = _get(lookup, resolved)
        if isinstance(outcome, SourceNotFound):
            tried.append((lookup.source, outcome.reason))
            continue
        return LoadedSecret(SecretStr(outcome.value), lookup.source, outcome.where, tuple(tried))
    raise _not_found(ref, origin, tried, resolved)


async def aresolve_secret(
    name: str,
    *,
    sources: Sequence[str] | None = None,
    version: str = "latest",
    stack: Stack | str | None = None,
) -> LoadedSecret:
    """Async `resolve_secret`: backend calls run on a worker thread, never on the event loop.

    Args:
        name: A plain name or a reference (see `load_secret`).
        sources: Sources to ask in order, instead of the stack's ``secrets.sources``.
        version: Version to read (``latest`` by default).
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The value with its source and location.
    """
    from oxeo_flows.stack import resolve_stack

    resolved = resolve_stack(stack)
    ref, lookups, origin = _plan(name, sources, version, resolved)
    tried: list[tuple[str, str]] = []
    for lookup in lookups:
        outcome = await _aget(lookup, resolved)
        if isinstance(outcome, SourceNotFound):
            tried.append((lookup.source, outcome.reason))
            continue
        return LoadedSecret(SecretStr(outcome.value), lookup.source, outcome.where, tuple(tried))
    raise _not_found(ref, origin, tried, resolved)


def load_secret(
    name: str,
    *,
    sources: Sequence[str] | None = None,
    version: str = "latest",
    stack: Stack | str | None = None,
) -> SecretStr:
    """Load a secret from the stack's sources (GCP Secret Manager, AWS, Prefect, environment).

    ``name`` is either a plain name, asked of each of the stack's ``secrets.sources`` in order
    (the ``local`` stack's default is ``["env", "prefect"]``), or an explicit reference that
    asks one source only:

    - ``gcp://[PROJECT/]NAME[@VERSION]``: GCP Secret Manager (project defaults to
      ``secrets.gcp-project``, then ``gcp.project``);
    - ``aws://NAME[#JSON_KEY]``: AWS Secrets Manager, optionally one field of a JSON secret;
    - ``prefect://BLOCK_NAME``: a Prefect ``Secret`` block, returned exactly as stored;
    - ``env://VAR``: the environment variable ``VAR`` as is.

    A plain name is read from the environment variable named by upper-casing it, replacing
    every character other than ``A-Z``/``0-9`` with ``_`` and prefixing ``secrets.env-prefix``
    (``dask-tls-key`` -> ``DASK_TLS_KEY``).

    Args:
        name: A plain name or a reference.
        sources: Sources to ask in order, instead of the stack's ``secrets.sources``.
        version: Version to read (``latest`` by default). The environment and Prefect
            sources have no versions and answer only ``latest``.
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The value as a `pydantic.SecretStr`; call ``.get_secret_value()`` at the last moment.

    Raises:
        SecretNotFoundError: No source has it; the message lists what each source said.
        SecretAccessError: A source refused (e.g. permission denied) or kept failing after
            its retries; the chain stops there rather than fall back to a later source.
        SecretIntegrityError: The payload failed its CRC32C check.
        ConfigError: The name, sources or stack are invalid.

    Example:
        ```python
        from prefect import flow
        from oxeo_flows import load_secret

        @flow
        def extract() -> None:
            token = load_secret("github-token")
            headers = {"Authorization": f"token {token.get_secret_value()}"}
        ```
    """
    return resolve_secret(name, sources=sources, version=version, stack=stack).value


async def aload_secret(
    name: str,
    *,
    sources: Sequence[str] | None = None,
    version: str = "latest",
    stack: Stack | str | None = None,
) -> SecretStr:
    """Async `load_secret`, for async flows and tasks.

    Concurrent calls for the same secret from tasks and threads share one backend call.

    Args:
        name: A plain name or a reference (see `load_secret`).
        sources: Sources to ask in order, instead of the stack's ``secrets.sources``.
        version: Version to read (``latest`` by default).
        stack: A `Stack`, a stack name, or None for the active stack.

    Returns:
        The value as a `pydantic.SecretStr`.

    Raises:
        SecretNotFoundError: No source has it.
        SecretAccessError: A source refused or kept failing.
        SecretIntegrityError: The payload failed its checksum.
        ConfigError: The name, sources or stack are invalid.
    """
    loaded = await aresolve_secret(name, sources=sources, version=version, stack=stack)
    return loaded.value
