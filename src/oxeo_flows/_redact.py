"""A process-wide registry of secret values that were loaded, used to keep them out of output.

`oxeo_flows.secrets` registers every value it loads. Other modules ask `is_loaded_secret`
(for example to refuse a secret value in a job spec) or call `redact` on text before it is
logged or raised. Only values of at least `MIN_LENGTH` characters are registered, so that
masking never rewrites ordinary short words.
"""

from __future__ import annotations

import threading

__all__ = ["MASK", "MIN_LENGTH", "is_loaded_secret", "redact", "register_secret_value"]

MASK = "**********"
MIN_LENGTH = 4

_lock = threading.Lock()
_values: frozenset[str] = frozenset()


def register_secret_value(value: str) -> None:
    """Remember ``value`` (and each of its lines) as secret, so it is masked from now on."""
    global _values  # noqa: PLW0603 - a copy-on-write set, read without the lock
    candidates = {value.strip(), *(line.strip() for line in value.splitlines())}
    new = {c for c in candidates if len(c) >= MIN_LENGTH}
    if not new - _values:
        return
    with _lock:
        _values = _values | new


def is_loaded_secret(value: str) -> bool:
    """True if ``value`` is, or contains, a secret value loaded in this process."""
    values = _values
    return any(v in value for v in values)


def redact(text: str) -> str:
    """Return ``text`` with every loaded secret value replaced by `MASK` (longest first)."""
    values = _values
    if not values:
        return text
    for v in sorted(values, key=len, reverse=True):
        if v in text:
            text = text.replace(v, MASK)
    return text


def _forget_all() -> None:
    """Forget every registered value (tests only)."""
    global _values  # noqa: PLW0603
    with _lock:
        _values = frozenset()
