"""Deploy the test flow to the stack's work pool: `python deploy.py [--stack aws] [--dry-run]`.

Equivalent to `oxeo-flows deploy flows/testflow.py:concurrent_flows --name testflow`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from oxeo_flows import deploy_flow


def main() -> None:
    """Parse arguments, deploy, print what was done."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", default=None, help="stack name (default: the active stack)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change")
    args = parser.parse_args()
    result = deploy_flow(
        "flows/testflow.py:concurrent_flows",
        name="testflow",
        stack=args.stack,
        src=Path(__file__).parent,
        tags=["example"],
        dry_run=args.dry_run,
    )
    print(result.summary())


if __name__ == "__main__":
    main()
