"""A process-wide registry of secret values that were loaded, used to keep them out of output.

`oxeo_flows.secrets` registers every value it loads. Other modules ask `is_loaded_secret`
(for example to refuse a secret value in a job spec), call `refuse_loaded_secrets` on values
that would be stored, or call `redact` / `redact_exception` on text before it is logged,
raised or sent to the Prefect API.

What is registered for a value: the value itself (stripped), each of its lines (so a
multi-line key is masked line by line also when it shows JSON-escaped, with literal ``\\n``
between the lines), its JSON-escaped form and that form with backslashes doubled (how
``repr`` of a JSON body shows it, as botocore logs response bodies), its percent-encoded form
(URLs), and its standard and URL-safe base64 forms.
PEM armor lines (``-----BEGIN ... KEY-----``) are public boilerplate and are not registered.
Only fragments of at least `MIN_LENGTH` characters are registered, so that masking never
rewrites ordinary short words.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from oxeo_flows.errors import ConfigError

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "SUBSTRING_LENGTH",
    "is_loaded_secret",
    "redact",
    "redact_exception",
    "refuse_loaded_secrets",
    "register_secret_value",
]

MASK = "**********"
MIN_LENGTH = 4
SUBSTRING_LENGTH = 8
"""A stored value sharing this many consecutive characters with a token-like secret is refused."""

_PEM_ARMOR = re.compile(r"^-----(BEGIN|END) [A-Z0-9 ]+-----$")
# Runs of token characters that look random enough to refuse pieces of: long, letters+digits.
# ("." splits host names and URLs into pieces too short to count.)
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{16,}")
_HAS_LETTER = re.compile(r"[A-Za-z]")
_HAS_DIGIT = re.compile(r"[0-9]")

_lock = threading.Lock()
_values: frozenset[str] = frozenset()
_ordered: tuple[str, ...] = ()  # _values, longest first (what `redact` replaces)
_grams: frozenset[str] = frozenset()  # SUBSTRING_LENGTH-grams of token-like runs


def _fragments(value: str) -> tuple[set[str], set[str]]:
    """(what to mask, what to take token pieces of: the text, its lines and base64 forms)."""
    out: set[str] = set()
    plain: set[str] = set()
    for text in {value, value.strip()}:
        raw = text.encode("utf-8")
        b64 = {
            base64.b64encode(raw).decode("ascii"),
            base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
        }
        lines = {line.strip() for line in text.splitlines()}
        plain |= {text.strip(), *lines, *b64}
        escaped = json.dumps(text)[1:-1]
        out |= {text.strip(), *lines, *b64, escaped, escaped.replace("\\", "\\\\")}
        out.add(quote(text, safe=""))
    keep = {f for f in out if len(f) >= MIN_LENGTH and not _PEM_ARMOR.match(f)}
    return keep, {f for f in plain if f in keep}


def _token_grams(values: Iterable[str]) -> frozenset[str]:
    grams: set[str] = set()
    for value in values:
        for run in _TOKEN_RUN.findall(value):
            if _HAS_LETTER.search(run) and _HAS_DIGIT.search(run):
                n = SUBSTRING_LENGTH
                pieces = (run[i : i + n] for i in range(len(run) - n + 1))
                # A piece of only digits (a project number) or only letters (a word) is too
                # common to mean "this is the secret": only mixed pieces count.
                grams.update(p for p in pieces if _HAS_LETTER.search(p) and _HAS_DIGIT.search(p))
    return frozenset(grams)


def _json_leaves(value: str) -> list[str]:
    try:
        data = json.loads(value)
    except ValueError:
        return []
    items = list(data.values()) if isinstance(data, dict) else []
    return [v for v in items if isinstance(v, str) and len(v) >= SUBSTRING_LENGTH]


def register_secret_value(value: str, *, json_fields: bool = False) -> None:
    """Remember ``value`` (its lines and encodings, see the module doc) as secret.

    Args:
        value: The loaded value.
        json_fields: ``value`` is a JSON object fetched whole (e.g. an AWS secret read for one
            field): also register each string field of at least `SUBSTRING_LENGTH`
            characters (shorter ones, like a user name, would mask ordinary words).
    """
    global _values, _ordered, _grams  # noqa: PLW0603 - copy-on-write, read without the lock
    new, plain = _fragments(value)
    if json_fields:
        for leaf in _json_leaves(value):
            more, more_plain = _fragments(leaf)
            new |= more
            plain |= more_plain
    if not new - _values:
        return
    with _lock:
        values = _values | new
        _ordered = tuple(sorted(values, key=len, reverse=True))
        _grams = _grams | _token_grams(plain)
        _values = values


def has_loaded_secrets() -> bool:
    """True once any secret value was registered in this process."""
    return bool(_values)


def is_loaded_secret(value: str) -> bool:
    """True if ``value`` is, or contains, a secret value loaded in this process."""
    return any(v in value for v in _ordered)


def redact(text: str) -> str:
    """Return ``text`` with every loaded secret value replaced by `MASK` (longest first)."""
    for v in _ordered:
        if v in text:
            text = text.replace(v, MASK)
    return text


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        return redact(text).encode("utf-8") if is_loaded_secret(text) else value
    return value


class RedactedError(Exception):
    """Stands in for an exception whose text still held a loaded secret after masking."""


def redact_exception(exc: BaseException) -> BaseException:
    """Mask loaded secret values in ``exc``, its notes and its chained exceptions, in place.

    String (and bytes) arguments are masked, so ``str(exc)``, tracebacks and pickles of
    ``exc`` show `MASK` instead of the value. An exception whose text still contains a secret
    after that (a custom ``__str__`` reading other attributes) is returned as a
    `RedactedError` carrying the masked text, type name included; otherwise ``exc`` itself is
    returned. Chained exceptions (``__cause__``, ``__context__``) are masked too.

    Args:
        exc: The exception.

    Returns:
        ``exc`` (masked in place) or a `RedactedError` to use instead of it.
    """
    if not _values:
        return exc
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _redact_one(current)
        current = current.__cause__ or current.__context__
    try:
        text = str(exc)
    except Exception:  # a broken __str__ is not ours to raise
        return exc
    if not is_loaded_secret(text):
        return exc
    stand_in = RedactedError(f"{type(exc).__qualname__}: {redact(text)}")
    stand_in.__cause__ = None
    stand_in.__suppress_context__ = True
    return stand_in.with_traceback(exc.__traceback__)


def _redact_one(exc: BaseException) -> None:
    try:
        if any(isinstance(a, str | bytes) for a in exc.args):
            masked = tuple(_redact_any(a) for a in exc.args)
            if masked != exc.args:
                exc.args = masked
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [_redact_any(n) for n in notes]
        for attr in ("msg", "message", "strerror", "filename", "reason"):
            value = exc.__dict__.get(attr) if hasattr(exc, "__dict__") else None
            if isinstance(value, str) and is_loaded_secret(value):
                setattr(exc, attr, redact(value))
    except Exception:  # noqa: S110 - masking must never raise over the original error
        pass


# ----------------------------------------------------------------------------- refusal


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, bytes):
        yield path, value.decode("utf-8", "replace")
    elif isinstance(value, Mapping):
        for i, (key, item) in enumerate(value.items()):
            if isinstance(key, str) and _holds_secret(key):
                yield f"{path} (its key number {i + 1})", key
                sub = f"{path}[<key number {i + 1}>]"
            else:
                sub = f"{path}[{key!r}]"
            yield from _strings(item, sub)
    elif isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _holds_secret(text: str) -> bool:
    if is_loaded_secret(text):
        return True
    grams = _grams
    if not grams or len(text) < SUBSTRING_LENGTH:
        return False
    n = SUBSTRING_LENGTH
    return any(text[i : i + n] in grams for i in range(len(text) - n + 1))


def refuse_loaded_secrets(values: Any, *, where: str) -> None:
    """Raise `ConfigError` if a value about to be stored holds a secret loaded in this process.

    Walks strings, bytes, mappings (keys and values) and sequences. A string is refused when
    it contains a loaded secret value (or a registered line/encoding of one), or when it
    shares `SUBSTRING_LENGTH` consecutive characters with a token-like part of one: a run of
    16+ characters of ``[A-Za-z0-9+/=_-]`` holding letters and digits, such as an API token,
    a key id or a line of a PEM key (so a truncated or embedded piece of a token is refused,
    while the public words of a JSON key file, its URLs or PEM armor lines are not).
    Pure and cheap when no secret was loaded.

    Args:
        values: What would be stored: a string, a mapping (e.g. env, labels, parameters) or a
            sequence (e.g. a command).
        where: The field's name as the user wrote it, e.g. ``"vertex.labels"`` or
            ``"deploy_flow(parameters=)"``; the message names it and the offending key.

    Raises:
        ConfigError: A value holds a loaded secret; the message names the field, never the
            value, and says to pass the secret's name and load it at run time.

    Example:
        ```python
        refuse_loaded_secrets({"team": "geo"}, where="vertex.labels")  # fine
        ```
    """
    if not _values:
        return
    for path, text in _strings(values, where):
        if _holds_secret(text):
            msg = (
                f"{redact(path)} holds a secret value loaded with load_secret; it would be "
                "stored in plain text (in Prefect, the cloud job or the VM's metadata). Pass the "
                "secret's NAME instead (e.g. an env var MY_TOKEN_SECRET='my-token') and call "
                "load_secret(name) at run time where the value is needed"
            )
            raise ConfigError(msg)


def _forget_all() -> None:
    """Forget every registered value (tests only)."""
    global _values, _ordered, _grams  # noqa: PLW0603
    with _lock:
        _values = frozenset()
        _ordered = ()
        _grams = frozenset()
