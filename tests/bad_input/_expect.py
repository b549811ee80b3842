"""The one assertion of the battery: our error type, the field named, the fix given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oxeo_flows.errors import OxeoFlowsError

#: Text of raw third-party errors that must never reach the user.
RAW = ("errors.pydantic.dev", "Traceback", "validation error for", "[type=")


def cases(table: list[Any]) -> list[Any]:
    """Rows ``(id, *values)`` as `pytest.param` with that id; `pytest.param` rows pass through."""
    return [row if hasattr(row, "marks") else pytest.param(*row[1:], id=row[0]) for row in table]


def expect(
    error: type[OxeoFlowsError], call: Callable[[], Any], field: str, fix: str | tuple[str, ...]
) -> str:
    """Run ``call``; assert it raises ``error`` naming ``field`` and the ``fix``.

    Args:
        error: The `oxeo_flows.errors` type expected.
        call: What to run.
        field: The key, argument or variable the message must name.
        fix: Text (or texts, all required) telling what to do.

    Returns:
        The message, for further checks.
    """
    with pytest.raises(OxeoFlowsError) as info:
        call()
    exc = info.value
    message = str(exc)
    assert isinstance(exc, error), f"{type(exc).__name__} is not {error.__name__}: {message}"
    assert field in message, f"field {field!r} not named in: {message}"
    for text in (fix,) if isinstance(fix, str) else fix:
        assert text in message, f"fix {text!r} not in: {message}"
    for raw in RAW:
        assert raw not in message, f"raw third-party text {raw!r} in: {message}"
    return message
