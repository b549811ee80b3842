"""Masking of loaded secret values in the records of every logger.

Two mechanisms, installed the first time a secret is fetched, cover each other:

- a `logging.setLogRecordFactory` wrapper masks the message (with its arguments formatted
  in), the exception (masked in place, see `oxeo_flows._redact.redact_exception`) and the
  stack text of every record when it is created, whatever the logger (botocore, urllib3,
  google.*, grpc, distributed, the root logger, prefect.*) and whatever handler emits it later,
  including handlers added after the secret was loaded;
- `SecretMaskingFilter`, which also masks ``extra=`` fields (set on a record after the
  factory ran), on each logger that creates a record (added by the factory the first time it
  sees the logger's name; a logger's filters run before any of its or its parents' handlers,
  including handlers added later), and on every handler of every logger, for records rebuilt
  with `logging.makeLogRecord` (Dask's and other socket handlers). Handlers are rescanned
  before each fetch.

While a secret is being fetched its value is not known yet, but SDKs log the response at
DEBUG (botocore: ``Response body: b'{"SecretString": "..."}'``; the Secret Manager gRPC
transport: the payload in ``extra``). Records created in that context have the string values
of the fields ``SecretString``, ``SecretBinary`` and ``data`` masked.

Cost: with no secret loaded the factory adds one function call and an empty-tuple test per
record; with secrets loaded, one message format and one substring scan per registered value.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from oxeo_flows import _redact
from oxeo_flows._redact import MASK, is_loaded_secret, redact, redact_exception

__all__ = ["SecretMaskingFilter", "fetching_secret", "install_log_filter", "mask_record"]

_FETCHING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "oxeo_flows_fetching_secret", default=False
)
_FETCH_MARK = "_oxeo_flows_fetching_secret"
_FRESH = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName", _FETCH_MARK}
)
# "SecretString": "...", 'SecretString': '...', with escapes, as JSON or Python repr shows it.
_FIELD = re.compile(
    r"""(?P<key>\\*["']?(?:SecretString|SecretBinary|data)\\*["']?\s*[:=]\s*)"""
    r"""(?P<q>\\*["'])(?:(?!(?P=q))(?:\\+.|.))*(?P=q)""",
    re.DOTALL,
)


def _scrub_fields(text: str) -> str:
    return _FIELD.sub(lambda m: f"{m['key']}{m['q']}{MASK}{m['q']}", text)


@contextmanager
def fetching_secret() -> Iterator[None]:
    """Mark the current context as fetching a secret (see the module docstring)."""
    token = _FETCHING.set(True)
    try:
        yield
    finally:
        _FETCHING.reset(token)


def _mask_text(text: str, fetching: bool) -> str:
    if fetching:
        text = _scrub_fields(text)
    return redact(text) if is_loaded_secret(text) else text


def _mask_value(value: Any, fetching: bool, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _mask_text(value, fetching)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {k: _mask_value(v, fetching, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(v, fetching, depth + 1) for v in value)
    return value


def mask_record(record: logging.LogRecord, *, extras: bool = False) -> None:
    """Mask loaded secret values in ``record`` in place (message, exception, stack, extras).

    Args:
        record: The record.
        extras: Also mask the attributes set with ``extra=`` (handler filters do).
    """
    fetching = bool(record.__dict__.get(_FETCH_MARK))
    if not fetching and not _redact.has_loaded_secrets():
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is not ours to raise
        message = str(record.msg)
    masked = _mask_text(message, fetching)
    if masked != message:
        record.msg = masked
        record.args = None
        if "message" in record.__dict__:
            record.message = masked
    if record.exc_info and record.exc_info[1] is not None:
        exc = redact_exception(record.exc_info[1])
        if exc is not record.exc_info[1]:
            record.exc_info = (type(exc), exc, record.exc_info[2])
    if record.exc_text:
        record.exc_text = _mask_text(record.exc_text, fetching)
    if record.stack_info:
        record.stack_info = _mask_text(record.stack_info, fetching)
    if extras and len(record.__dict__) > _FRESH:  # a fresh record without extras has _FRESH
        for key in record.__dict__.keys() - _STANDARD:
            value = record.__dict__[key]
            record.__dict__[key] = _mask_value(value, fetching)


class SecretMaskingFilter(logging.Filter):
    """Replace loaded secret values in a record's message, arguments, exception and extras.

    The record is changed in place (so every handler after this point sees the masked text)
    and is never dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record; always keep it."""
        if not _redact._values and _FETCH_MARK not in record.__dict__:
            return True  # nothing loaded: the fast path
        if getattr(_last, "record", None) is record:
            return True  # already masked by this filter on its logger (same thread, just now)
        with contextlib.suppress(Exception):  # a log line must never fail because of masking
            mask_record(record, extras=True)
        _last.record = record
        return True


_last = threading.local()

_FILTER = SecretMaskingFilter("oxeo_flows.secrets")
_lock = threading.Lock()
_seen = -1
_factory_installed = False


_filtered: set[str] = set()


def _filter_logger(name: str) -> None:
    """Put the filter on the logger itself: it then sees ``extra=`` fields of its records
    before any handler, also handlers added later (a logger's filters run in ``handle``)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    _filtered.add(name)


def _install_factory() -> None:
    global _factory_installed  # noqa: PLW0603
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name not in _filtered:
            _filter_logger(record.name)
        if _FETCHING.get():
            record.__dict__[_FETCH_MARK] = True
        elif not _redact._values:
            return record
        with contextlib.suppress(Exception):  # a log line must never fail because of masking
            mask_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def _handlers() -> Iterator[logging.Handler]:
    yield from logging.getLogger().handlers
    for obj in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(obj, logging.Logger):
            yield from obj.handlers


def install_log_filter(*, rescan: bool = False) -> None:
    """Install the record factory and put the masking filter on every logger's handlers.

    Idempotent and cheap: handlers are rescanned only when new loggers appeared or when
    ``rescan`` is true (each secret fetch asks for it). The ``prefect`` loggers also get the
    filter on the logger itself.

    Args:
        rescan: Look at every handler again even if no logger was added.
    """
    global _seen  # noqa: PLW0603
    count = len(logging.Logger.manager.loggerDict)
    if count == _seen and not rescan:
        return
    with _lock:
        _install_factory()
        for handler in _handlers():
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
        for obj in [logging.getLogger("prefect"), *_prefect_loggers()]:
            if _FILTER not in obj.filters:
                obj.addFilter(_FILTER)
        _seen = count


def _prefect_loggers() -> list[logging.Logger]:
    return [
        obj
        for name, obj in list(logging.Logger.manager.loggerDict.items())
        if name.startswith("prefect.") and isinstance(obj, logging.Logger)
    ]
