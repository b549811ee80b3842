"""``gcp.endpoints.compute`` reaches the GCP cluster's own Compute client."""

from __future__ import annotations

import pytest

from oxeo_flows.clusters.gcp import compute_endpoint_url
from oxeo_flows.runners import _gcp_kwargs


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080/compute/v1/"),
        ("localhost:8080", "http://localhost:8080/compute/v1/"),
        ("compute.internal.example:443", "https://compute.internal.example:443/compute/v1/"),
        ("http://127.0.0.1:9/compute/v1", "http://127.0.0.1:9/compute/v1/"),
        (
            "https://private.googleapis.com/compute/beta/",
            "https://private.googleapis.com/compute/beta/",
        ),
    ],
)
def test_endpoint_urls(endpoint: str, url: str) -> None:
    assert compute_endpoint_url(endpoint) == url


def test_stack_endpoint_goes_to_the_cluster_kwargs() -> None:
    from oxeo_flows.stack import load_stack

    stack = load_stack(
        overrides={
            "gcp": {
                "project": "oxeo-test",
                "region": "europe-west4",
                "zone": "europe-west4-a",
                "network": "dask",
                "subnetwork": "dask",
                "endpoints": {"compute": "127.0.0.1:4242"},
            },
            "dask": {"backend": "gcp", "gcp": {"docker-image": "img:1"}},
        }
    )
    assert _gcp_kwargs(stack, stack.dask)["compute_endpoint"] == "127.0.0.1:4242"


def test_loopback_client_is_anonymous_and_plaintext() -> None:
    from google.auth.credentials import AnonymousCredentials

    from oxeo_flows.clusters.gcp import compute_client

    client = compute_client("127.0.0.1:9")
    assert client._baseUrl == "http://127.0.0.1:9/compute/v1/"
    assert isinstance(client._http.credentials, AnonymousCredentials)
