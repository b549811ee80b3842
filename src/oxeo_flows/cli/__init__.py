"""The ``oxeo-flows`` command line.

`main` runs plain ``sync`` / ``pull`` command lines without importing typer, Rich or the other
commands (`oxeo_flows.cli._storage`); everything else goes to the typer application, ``app``
(`oxeo_flows.cli._app`, imported on first use).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oxeo_flows.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``oxeo-flows`` script."""
    from oxeo_flows.cli._storage import fast_main

    code = fast_main(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from oxeo_flows.cli._app import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from oxeo_flows.cli import _app

        return _app.app
    msg = f"module 'oxeo_flows.cli' has no attribute {name!r}"
    raise AttributeError(msg)
