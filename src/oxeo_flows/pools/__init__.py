"""Work pools: the ensure mechanism every pool type shares, and the registry of pool kinds.

- `ensure_pool` (`oxeo_flows.pools._template`) creates or updates any work pool from a set of
  job-variable defaults, idempotently, with the ``x-oxeo-flows`` marker and the merge policy
  described there.
- `oxeo_flows.pools.kinds` is the one registry of the kinds a stack can use (``process``,
  ``docker``, ``vertex-ai``) and the one layering rule of ``[pools.<name>]`` sections; deploy,
  apply, doctor and the CLI all look pools up there.
"""

from oxeo_flows.pools._template import (
    MANAGED_MARKER,
    PoolResult,
    aensure_pool,
    default_base_job_template,
    ensure_pool,
)

__all__ = [
    "MANAGED_MARKER",
    "PoolResult",
    "aensure_pool",
    "default_base_job_template",
    "ensure_pool",
]
