"""A logging filter that masks loaded secret values in records of the ``prefect`` loggers."""

from __future__ import annotations

import logging
import threading
from typing import Any

from oxeo_flows._redact import is_loaded_secret, redact

__all__ = ["SecretMaskingFilter", "install_log_filter"]


class SecretMaskingFilter(logging.Filter):
    """Replace loaded secret values in a record's message, arguments and exception text.

    The record is changed in place (so every handler after this point sees the masked text)
    and is never dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is not ours to raise
            message = str(record.msg)
        if is_loaded_secret(message):
            record.msg = redact(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and is_loaded_secret(record.exc_text):
            record.exc_text = redact(record.exc_text)
        if record.stack_info and is_loaded_secret(record.stack_info):
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = SecretMaskingFilter("oxeo_flows.secrets")
_lock = threading.Lock()
_seen = -1
_factory_installed = False


def _is_prefect(name: str) -> bool:
    return name == "prefect" or name.startswith("prefect.")


def _install_factory() -> None:
    """Also mask records of ``prefect.*`` loggers created after the filter was installed."""
    global _factory_installed  # noqa: PLW0603
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _is_prefect(record.name):
            _FILTER.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def _prefect_loggers() -> list[logging.Logger]:
    manager = logging.Logger.manager
    loggers = [logging.getLogger("prefect")]
    for name, obj in list(manager.loggerDict.items()):
        if name.startswith("prefect.") and isinstance(obj, logging.Logger):
            loggers.append(obj)
    return loggers


def install_log_filter() -> None:
    """Put the masking filter on the ``prefect`` logger, its child loggers and their handlers.

    ``prefect.*`` loggers created later are covered too (the filter is applied when their
    records are created). Idempotent and cheap: it rescans only when new loggers appeared.
    """
    global _seen  # noqa: PLW0603
    count = len(logging.Logger.manager.loggerDict)
    if count == _seen:
        return
    with _lock:
        _install_factory()
        for logger in _prefect_loggers():
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
            for handler in logger.handlers:
                if _FILTER not in handler.filters:
                    handler.addFilter(_FILTER)
        _seen = count
