"""Deploy the extract flow to Vertex AI: `python deploy.py [--stack prod] [--dry-run]`.

1. ensures the ``vertex-ai`` work pool (prefect-gcp's template, our job defaults, idempotent);
2. registers the deployment with the stack's job variables. The image already contains this
   project at /opt/prefect/gcp_vertex_dask (see the Dockerfile), so there are no pull steps.

`prefect deploy --all` with prefect.yaml does step 2 too; tests check that both agree.
"""

from __future__ import annotations

import argparse
import json

from oxeo_flows import ensure_vertex_pool, load_stack, vertex_job


def main() -> None:
    """Parse arguments, ensure the pool, deploy, print what was done."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", default="prod", help="stack name (default: prod)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change")
    args = parser.parse_args()

    stack = load_stack(args.stack)
    job = vertex_job(stack=stack)
    pool = ensure_vertex_pool(
        stack.default_work_pool,
        job,
        credentials_block=stack.vertex.credentials_block or stack.gcp.credentials_block,
        dry_run=args.dry_run,
    )
    print(f"work pool {pool.name}: {pool.action}")
    for path, (old, new) in pool.changes.items():
        print(f"  {path}: {old!r} -> {new!r}")
    if args.dry_run:
        print(json.dumps(job.job_variables(), indent=2))
        return

    from flows.extract import extract

    deployment_id = extract.deploy(
        name="extract",
        work_pool_name=stack.default_work_pool,
        image=job.image,
        build=False,
        push=False,
        job_variables=job.job_variables(),
    )
    print(f"deployment extract/extract: {deployment_id}")


if __name__ == "__main__":
    main()
