"""Import optional dependencies on first use, naming the extra that provides them."""

from __future__ import annotations

import importlib
from types import ModuleType

from oxeo_flows.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise `MissingExtraError` naming the extra to install.

    Args:
        module: Dotted module name, e.g. ``"prefect_dask"``.
        extra: The oxeo-flows extra that installs it, e.g. ``"dask"``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: The module (or one of its own dependencies) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = (
            f"{module!r} is not installed, and this feature needs it. "
            f"Install it with: pip install 'oxeo-flows[{extra}]' "
            f"(import failed with: {exc})"
        )
        raise MissingExtraError(msg, extra=extra, module=module) from exc
