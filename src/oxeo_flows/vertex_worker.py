"""Container command of the Dask worker replicas of a Vertex AI job (``dask.backend = "vertex"``).

Usage (written into the pool's second worker pool spec for you)::

    python -m oxeo_flows.vertex_worker --project P [--port 8786] [--timeout 600]
        [--secret-manager-endpoint HOST:PORT]

It reads ``CLUSTER_SPEC``, waits for the per-job TLS secret the flow run creates, joins the
scheduler on replica 0 with the worker certificate, and exits 0 when the scheduler closes it
(when the flow run ends). See `oxeo_flows.clusters.vertex`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from oxeo_flows.errors import OxeoFlowsError

__all__ = ["main"]

_ENDPOINT_ENV = "OXEO_FLOWS_GCP__ENDPOINTS__SECRET_MANAGER"
EXIT_START = 75  # EX_TEMPFAIL: the scheduler or the secret did not come in time


def main(argv: Sequence[str] | None = None) -> int:
    """Run one Dask worker replica; return its exit code."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__)
    parser.add_argument("--project", required=True, help="project of the per-job TLS secret")
    parser.add_argument("--port", type=int, default=8786, help="the scheduler's port")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to join")
    parser.add_argument(
        "--secret-manager-endpoint",
        default=os.environ.get(_ENDPOINT_ENV) or None,
        help="HOST:PORT of the Secret Manager API (default: Google's)",
    )
    parser.add_argument("--nthreads", type=int, default=None, help="threads (default: CPUs)")
    args = list(sys.argv[1:] if argv is None else argv)
    options = parser.parse_args(args)
    from oxeo_flows.clusters import vm_forkserver

    # No Nanny here: the replica takes the environment a Nanny gives its worker
    # (PYTHONHASHSEED: every worker must hash alike), re-executing itself before any import.
    vm_forkserver.reexec("oxeo_flows.vertex_worker", args, vm_forkserver.reexec_env())
    from oxeo_flows.clusters.vertex import run_worker

    try:
        return run_worker(
            project=options.project,
            port=options.port,
            timeout=options.timeout,
            secret_manager_endpoint=options.secret_manager_endpoint,
            nthreads=options.nthreads,
        )
    except OxeoFlowsError as exc:
        print(f"oxeo-flows vertex worker: {exc}", file=sys.stderr, flush=True)
        return EXIT_START


if __name__ == "__main__":  # pragma: no cover - run as the replicas' command
    sys.exit(main())
