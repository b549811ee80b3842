"""The ``env`` secret source: environment variables.

A plain name becomes a variable name by upper-casing it, replacing every character other than
``A-Z`` and ``0-9`` with ``_``, and prefixing the stack's ``secrets.env-prefix``::

    load_secret("dask-tls-key")          # reads DASK_TLS_KEY
    load_secret("sat-extractor.sa")      # reads SAT_EXTRACTOR_SA
    # with secrets.env-prefix = "OXEO_SECRET_":
    load_secret("github-token")          # reads OXEO_SECRET_GITHUB_TOKEN

``env://VAR`` reads ``VAR`` exactly as written (no prefix, no change of case). A variable that
is unset or empty counts as *not found*. The environment is read live on every lookup (it is
never cached), and it has no versions: only ``latest`` is answered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from typing import TYPE_CHECKING

from oxeo_flows.secrets._base import Fetched, Lookup, SourceNotFound

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["env_var_name"]

CACHEABLE = False
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]")


def env_var_name(name: str, prefix: str = "") -> str:
    """The environment variable a plain secret name is read from.

    Args:
        name: The secret name, e.g. ``"dask-tls-key"``.
        prefix: The stack's ``secrets.env-prefix`` (default empty).

    Returns:
        E.g. ``"DASK_TLS_KEY"`` (or ``prefix + "DASK_TLS_KEY"``).
    """
    return prefix + _NON_ALNUM.sub("_", name).upper()


def identity(lookup: Lookup, stack: Stack) -> Hashable:
    """The prefix decides which variable is read."""
    return stack.secrets.env_prefix


def fetch(lookup: Lookup, stack: Stack) -> Fetched:
    """Read the variable now."""
    var = lookup.name if lookup.explicit else env_var_name(lookup.name, stack.secrets.env_prefix)
    if lookup.version != "latest":
        msg = f"environment variables have no versions (asked for version {lookup.version!r})"
        raise SourceNotFound(msg)
    value = os.environ.get(var)
    if value is None:
        raise SourceNotFound(f"environment variable {var} is not set")
    if not value:
        raise SourceNotFound(f"environment variable {var} is empty")
    return Fetched(value=value, where=f"environment variable {var}")
