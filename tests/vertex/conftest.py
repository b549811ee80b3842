"""Fixtures for the Vertex tests: a fake JobService, throwaway GCP credentials, a stack."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from oxeo_flows.testing.vertex import VertexEmulator

PROJECT = "oxeo-test"
NUMBER = "123456789012"
SA = "runner@oxeo-test.iam.gserviceaccount.com"

STACK = f"""
[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.prod]
runner = "vertex"

[tool.oxeo-flows.stacks.prod.gcp]
project = "{PROJECT}"
project-number = "{NUMBER}"
region = "europe-west4"
network = "dask"
subnetwork = "dask-europe-west4"
reserved-ip-ranges = ["vertex-peering"]
service-account = "{SA}"

[tool.oxeo-flows.stacks.prod.vertex]
image = "europe-docker.pkg.dev/oxeo-test/flows/extract:1"
machine-type = "n1-highmem-8"
accelerator-type = "NVIDIA_TESLA_T4"
accelerator-count = 2
boot-disk-type = "pd-standard"
boot-disk-size-gb = 200
scheduling-strategy = "SPOT"
restart-job-on-worker-restart = true
labels = {{ team = "flows" }}
env = {{ SAT_TOKEN_SECRET = "sat-extractor-sa" }}
api-key-secret = "prefect-api-key"
job-watch-poll-interval = 0.05
"""


@functools.cache
def service_account_info() -> dict[str, Any]:
    """A throwaway service-account key (fresh RSA key; its token URI is a closed loopback port)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0" * 40,
        "private_key": pem,
        "client_email": f"submitter@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }


@pytest.fixture
def gcp_credentials_block(prefect_server: str) -> str:
    """A saved GcpCredentials block built from a throwaway key; yields its name."""
    from prefect_gcp import GcpCredentials

    name = f"vertex-submitter-{uuid.uuid4().hex[:8]}"
    GcpCredentials(service_account_info=service_account_info(), project=PROJECT).save(name)
    return name


@pytest.fixture
def jobservice() -> Iterator[VertexEmulator]:
    """The emulated Vertex AI JobService on 127.0.0.1, scripted (it runs no container)."""
    with VertexEmulator(execute=False) as fake:
        yield fake


@pytest.fixture
def prod_stack(stack_file: Any) -> Any:
    """The 'prod' stack above, loaded."""
    from oxeo_flows.stack import load_stack

    stack_file(STACK)
    return load_stack()


def with_credentials(block: str) -> Any:
    """The active stack with ``vertex.credentials-block`` set to ``block`` (as a stack would)."""
    from oxeo_flows.stack import load_stack

    return load_stack(overrides={"vertex": {"credentials_block": block}})
