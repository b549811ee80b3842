"""Loaded secret values kept out of the Failed/Crashed states Prefect sends to its API.

Prefect builds the state of a failed flow or task run in four functions:
``prefect.states.exception_to_failed_state`` / ``exception_to_crashed_state`` and their sync
twins in ``prefect._internal.states``. Each turns the exception into the state message
(``Flow run encountered an exception: ValueError: ...``, sent to the API) and, when results
are persisted, pickles the exception into result storage. Prefect has no redaction setting,
so once a secret is loaded `install_state_redaction` wraps these four functions (in their
modules and wherever they were imported by name, e.g. ``prefect.flow_engine``) with one that
first masks the exception in place (`oxeo_flows._redact.redact_exception`) and then masks
the message. Prefect modules imported later pick up the wrapped functions too: if
``prefect.states`` is not imported yet, a one-shot import hook wraps it when it is.

Nothing changes for a run whose exception holds no loaded secret: the same exception object
and the same message reach Prefect.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from oxeo_flows._redact import has_loaded_secrets, redact, redact_exception

__all__ = ["install_state_redaction", "redact_state"]

_TARGETS: dict[str, tuple[str, ...]] = {
    "prefect.states": ("exception_to_failed_state", "exception_to_crashed_state"),
    "prefect._internal.states": (
        "exception_to_failed_state_sync",
        "exception_to_crashed_state_sync",
    ),
}
_WRAPPED = "__oxeo_flows_redacts__"
_lock = threading.Lock()
_hook_installed = False


def redact_state(state: Any) -> Any:
    """Mask loaded secret values in a Prefect state's message, in place, and return it.

    Args:
        state: A ``prefect.client.schemas.objects.State``.

    Returns:
        The same state.
    """
    message = getattr(state, "message", None)
    if isinstance(message, str) and has_loaded_secrets():
        state.message = redact(message)
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        masked = redact_exception(data)
        if masked is not data:
            state.data = masked
    return state


def _prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if not has_loaded_secrets():
        return args
    exc = args[0] if args else kwargs.get("exc")
    if exc is None:
        exc = sys.exc_info()[1]
    if isinstance(exc, BaseException):
        exc = redact_exception(exc)
        if args:
            args = (exc, *args[1:])
        else:
            kwargs["exc"] = exc
    message = kwargs.get("message")
    if isinstance(message, str):
        kwargs["message"] = redact(message)
    return args


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(original, _WRAPPED, False):
        return original
    if _is_coroutine_function(original):

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            args = _prepare(args, kwargs)
            return redact_state(await original(*args, **kwargs))

    else:

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            args = _prepare(args, kwargs)
            return redact_state(original(*args, **kwargs))

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def _is_coroutine_function(func: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(func)


def _patch(module: ModuleType, names: Sequence[str]) -> None:
    """Wrap ``names`` in ``module`` and rebind every Prefect module that imported them."""
    for name in names:
        original = getattr(module, name, None)
        if original is None or getattr(original, _WRAPPED, False):
            continue
        wrapped = _wrap(original)
        setattr(module, name, wrapped)
        for other_name, other in list(sys.modules.items()):
            if not other_name.startswith("prefect") or other is None:
                continue
            if getattr(other, name, None) is original:
                setattr(other, name, wrapped)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wrap the state functions of a Prefect module right after it is first executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            loader = spec.loader
            if loader is not None and hasattr(loader, "exec_module"):
                exec_module = loader.exec_module

                def exec_and_patch(module: ModuleType, _exec: Any = exec_module) -> None:
                    _exec(module)
                    _patch(module, _TARGETS[module.__name__])

                loader.exec_module = exec_and_patch  # type: ignore[method-assign]
            return spec
        return None


def install_state_redaction() -> None:
    """Wrap Prefect's exception-to-state functions so that states never hold loaded secrets.

    Called when a secret is loaded. Idempotent; a no-op for modules already wrapped.
    """
    global _hook_installed  # noqa: PLW0603
    with _lock:
        for name, names in _TARGETS.items():
            module = sys.modules.get(name)
            if module is not None:
                _patch(module, names)
        if not _hook_installed and any(name not in sys.modules for name in _TARGETS):
            sys.meta_path.insert(0, _PatchOnImport())
            _hook_installed = True
