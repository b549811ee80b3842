"""Fixtures for doctor tests: the GCP REST fake in a clean state, Prefect, moto, a secret."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.doctor._stacks import BUCKET
from tests.fakes.gcp_rest import FakeGcpRest, clean_state


@pytest.fixture
def gcp() -> Iterator[FakeGcpRest]:
    with FakeGcpRest(clean_state()) as fake:
        yield fake


@pytest.fixture
def env(prefect_api: str, moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """Prefect, moto with the bucket, the required secret in the environment."""
    import boto3

    boto3.client("s3", endpoint_url=moto, region_name="eu-west-1").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    monkeypatch.setenv("SAT_EXTRACTOR_SA", "not-a-real-key-value-1234")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    return moto
