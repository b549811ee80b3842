"""``dask.reuse`` / ``dask.cluster-name`` and ``dask.tls.vm-certificates``: settings and errors."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows import dask_runner, load_stack
from oxeo_flows.errors import ConfigError


def _stack(**dask: Any) -> Any:
    return load_stack(
        overrides={
            "gcp": {
                "project": "oxeo-test",
                "region": "europe-west4",
                "zone": "europe-west4-a",
                "network": "dask",
                "subnetwork": "dask",
                "endpoints": {"secret-manager": "127.0.0.1:9"},
            },
            "dask": {"backend": "gcp", "gcp": {"docker-image": "img:1"}, **dask},
        }
    )


def test_reuse_goes_to_the_factory_with_its_name() -> None:
    runner: Any = dask_runner(stack=_stack(reuse=True, **{"cluster-name": "shared-1"}))
    assert runner.cluster_kwargs["cluster_name"] == "shared-1"
    assert runner.cluster_kwargs["reuse"] is True
    assert runner.cluster_kwargs["tls_delivery"] == "secret"
    assert runner.cluster_kwargs["secret_manager_endpoint"] == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("dask", "fix"),
    [
        ({"reuse": True}, "reuse needs cluster-name"),
        (
            {"reuse": True, "cluster-name": "shared-1", "adapt": [1, 3]},
            "adapt does not apply with reuse",
        ),
        ({"cluster-name": "Shared_1"}, "use lowercase letters, digits and '-'"),
        ({"reuse": True, "cluster-name": "x", "tls": {"enabled": False}}, "needs TLS on"),
        ({"tls": {"vm-certificates": "userdata"}}, "dask.tls.vm-certificates"),
    ],
)
def test_bad_reuse_and_delivery_settings_name_the_field(dask: dict[str, Any], fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        dask_runner(stack=_stack(**dask))
    assert fix in str(info.value)


def test_reuse_on_a_local_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="reuse applies to the gcp and ec2 backends"):
        dask_runner("local", stack=_stack(), reuse=True, cluster_name="shared-1")
