"""Benchmark of `load_secret` against the in-repo fake GCP Secret Manager (127.0.0.1).

Prints:
1. backend calls for 1,000 lookups of one secret from 20 threads (target: 1);
2. cached lookup latency p50 / p99 (target p50 <= 20 us), with the active stack and with a
   `Stack` object;
3. cold lookup (cache cleared, client warm) vs the raw SDK call `access_secret_version`
   (target <= 1.1x).

Run: python benchmarks/secret_lookup.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.secretmanager import FakeSecretManager

PROJECT = "bench-proj"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    os.chdir(tempfile.mkdtemp(prefix="oxeo-bench-"))  # no stack file around
    with FakeSecretManager() as fake:
        os.environ["OXEO_FLOWS_SECRETS__SOURCES"] = "gcp"
        os.environ["OXEO_FLOWS_GCP__PROJECT"] = PROJECT
        os.environ["OXEO_FLOWS_GCP__ENDPOINTS__SECRET_MANAGER"] = fake.endpoint
        fake.add(PROJECT, "bench-secret", "v" * 64)

        from oxeo_flows import load_stack
        from oxeo_flows.secrets import clear_secret_cache, load_secret
        from oxeo_flows.secrets.gcp import secret_manager_client

        stack = load_stack()
        load_secret("bench-secret")  # warm imports and the gRPC channel

        # 1. single-flight + cache: 1,000 lookups from 20 threads
        clear_secret_cache()
        before = fake.calls["AccessSecretVersion"]
        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(lambda _: load_secret("bench-secret"), range(1000)))
        calls = fake.calls["AccessSecretVersion"] - before
        print(f"backend calls for 1,000 lookups from 20 threads: {calls} (target 1)")

        # 2. cached lookups
        for label, kwargs in (("active stack", {}), ("Stack object", {"stack": stack})):
            samples = []
            for _ in range(20_000):
                t0 = time.perf_counter_ns()
                load_secret("bench-secret", **kwargs)
                samples.append((time.perf_counter_ns() - t0) / 1000)
            print(
                f"cached lookup ({label}): p50 {pct(samples, 0.5):.1f} us, "
                f"p99 {pct(samples, 0.99):.1f} us (target p50 <= 20 us)"
            )

        # 3. cold lookup vs raw SDK call (same warm client and channel)
        client = secret_manager_client(fake.endpoint)
        resource = f"projects/{PROJECT}/secrets/bench-secret/versions/latest"
        cold: list[float] = []
        raw: list[float] = []
        for _ in range(500):
            clear_secret_cache()
            t0 = time.perf_counter_ns()
            load_secret("bench-secret", stack=stack)
            cold.append((time.perf_counter_ns() - t0) / 1000)
            t0 = time.perf_counter_ns()
            client.access_secret_version(request={"name": resource})
            raw.append((time.perf_counter_ns() - t0) / 1000)
        cold_p50, raw_p50 = statistics.median(cold), statistics.median(raw)
        print(
            f"cold lookup p50 {cold_p50:.0f} us vs raw SDK call p50 {raw_p50:.0f} us: "
            f"{cold_p50 / raw_p50:.2f}x (target <= 1.1x)"
        )
        cold = []
        for _ in range(200):
            clear_secret_cache()
            t0 = time.perf_counter_ns()
            load_secret("bench-secret")
            cold.append((time.perf_counter_ns() - t0) / 1000)
        print(
            f"cold lookup with the active stack (re-read after clear) p50 "
            f"{statistics.median(cold):.0f} us"
        )


if __name__ == "__main__":
    main()
