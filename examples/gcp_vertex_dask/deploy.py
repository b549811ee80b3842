"""Deploy the extract flow to Vertex AI: `python deploy.py [--stack prod] [--dry-run]`.

One call, `deploy_flow`: it ensures the ``vertex-ai`` work pool from the stack (prefect-gcp's
template with the stack's job settings, exactly what ``oxeo-flows apply`` writes) and registers
the deployment, which carries its stack. The image already contains this project at
/opt/prefect/gcp_vertex_dask (``storage.image-code-dir``, see the Dockerfile), so nothing is
synced. A dry run writes nothing and reports a block the real run would need (the
``GcpCredentials`` block of ``gcp.credentials-block``) if it does not exist yet.

`prefect deploy --all` with prefect.yaml registers the same deployment; tests check both agree.
"""

from __future__ import annotations

import argparse
import sys

from oxeo_flows import OxeoFlowsError, deploy_flow


def main() -> int:
    """Parse arguments, deploy, print what was done (or would be)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", default="prod", help="stack name (default: prod)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change")
    args = parser.parse_args()
    try:
        result = deploy_flow(
            "flows/extract.py:extract",
            name="extract",
            stack=args.stack,
            parameters={"n_workers": 4},
            dry_run=args.dry_run,
        )
    except OxeoFlowsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
