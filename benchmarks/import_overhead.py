"""Import cost: ``import oxeo_flows`` vs ``import prefect``, in fresh processes.

Usage: python benchmarks/import_overhead.py [--runs 7]
Prints the median wall time of each import (fresh interpreter each run) and the ratio.
Target: oxeo_flows / prefect <= 1.10 (oxeo-flows does not import prefect at all at import time).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

SNIPPETS = {
    "python (baseline)": "pass",
    "import prefect": "import prefect",
    "import oxeo_flows": "import oxeo_flows",
    "import oxeo_flows + load_stack()": "import oxeo_flows; oxeo_flows.load_stack()",
    "import oxeo_flows.cli": "import oxeo_flows.cli",
}


def measure(code: str, runs: int) -> float:
    timer = f"import time; t0 = time.perf_counter(); {code}; print(time.perf_counter() - t0)"
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", timer], capture_output=True, text=True, check=True
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = {label: measure(code, args.runs) for label, code in SNIPPETS.items()}
    for label, seconds in results.items():
        print(f"{label:36s} {seconds * 1000:8.1f} ms  (median of {args.runs})")
    ratio = results["import oxeo_flows"] / results["import prefect"]
    print(f"\nratio import oxeo_flows / import prefect: {ratio:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
