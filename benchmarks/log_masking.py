"""Cost of secret masking per log record: none installed, installed with no secret loaded,
and with secrets loaded (a token, and a 2048-bit PEM key registered line by line).

Each case emits N records through a logger with one handler that formats the record (what
a real handler does), so the numbers are the per-record cost a program pays. Nothing is
contacted.

Run: ``python benchmarks/log_masking.py [--records 100000]``
"""

from __future__ import annotations

import argparse
import logging
import time


class _Format(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def _per_record(n: int) -> float:
    logger = logging.getLogger("bench.masking")
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for i in range(n):
            logger.info("request %s took %d ms from %s", "GET /api/items", i, "10.0.0.1")
        best = min(best, time.process_time() - start)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    n = parser.parse_args().records
    logger = logging.getLogger("bench.masking")
    logger.addHandler(_Format())
    logger.setLevel(logging.INFO)
    logger.propagate = False

    baseline = _per_record(n)
    from oxeo_flows import _redact
    from oxeo_flows.secrets._logging import install_log_filter

    install_log_filter(rescan=True)
    idle = _per_record(n)
    _redact.register_secret_value("ghp_" + "a1B2c3D4" * 5)
    one = _per_record(n)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    _redact.register_secret_value(pem)
    key = _per_record(n)
    values = len(_redact._values)
    print(f"records per case: {n} (best of 7, CPU time)")
    print(f"no masking installed:          {baseline:6.2f} us/record")
    print(f"installed, no secret loaded:   {idle:6.2f} us/record (+{idle - baseline:.2f})")
    print(f"one token loaded:              {one:6.2f} us/record (+{one - baseline:.2f})")
    print(f"token + PEM key ({values} fragments): {key:6.2f} us/record (+{key - baseline:.2f})")


if __name__ == "__main__":
    main()
