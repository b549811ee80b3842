"""The test flow of the original AWS notes, made deployable with oxeo-flows."""

from __future__ import annotations

import random
import time

from prefect import flow


@flow(name="testflow")
def my_flow(param: str, max_delay: float = 3.0) -> str:
    """Pretend to work for a moment, then report."""
    print(f"running for {param}")
    time.sleep(random.uniform(0, max_delay))
    return f"finished {param}"


@flow(name="concurrent-flows")
def concurrent_flows(max_delay: float = 3.0) -> list[str]:
    """Run two sub-flows one after the other."""
    return [my_flow("FIRST", max_delay), my_flow("SECOND", max_delay)]


if __name__ == "__main__":
    print(concurrent_flows())
