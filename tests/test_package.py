"""The package surface: version, curated __all__, cheap import, missing extras."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import pytest

import oxeo_flows
from oxeo_flows._extras import require
from oxeo_flows.errors import MissingExtraError, OxeoFlowsError

FORBIDDEN = (
    "prefect_gcp",
    "prefect_aws",
    "prefect_dask",
    "prefect_docker",
    "dask_cloudprovider",
    "google.cloud",
    "googleapiclient",
    "boto3",
    "botocore",
    "aiobotocore",
    "distributed",
    "grpc",
)


def test_version_is_the_installed_metadata() -> None:
    assert oxeo_flows.__version__ == version("oxeo-flows")


def test_all_is_sorted_and_unique() -> None:
    assert list(oxeo_flows.__all__) == sorted(set(oxeo_flows.__all__))


def test_all_matches_the_lazy_table() -> None:
    public = set(oxeo_flows.__all__) - {"__version__"}
    assert public == set(oxeo_flows._LAZY)


@pytest.mark.parametrize("name", sorted(set(oxeo_flows.__all__)))
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(oxeo_flows, name) is not None


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    # Importing a submodule binds it as a package attribute: a submodule named like a public
    # function would replace that function depending on import order.
    import importlib.util
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(oxeo_flows.__path__)}
    assert not submodules & set(oxeo_flows.__all__)
    assert importlib.util.find_spec("oxeo_flows.runners") is not None


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = oxeo_flows.nope  # type: ignore[attr-defined]


def test_import_pulls_no_cloud_sdk() -> None:
    code = (
        "import json, sys\n"
        "import oxeo_flows, oxeo_flows.cli, oxeo_flows.steps, oxeo_flows.stack\n"
        "oxeo_flows.load_stack()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    # Some wheels (google-cloud-aiplatform) ship a .pth that imports the empty ``google.cloud``
    # namespace at interpreter start-up: only count what importing us added.
    bare = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    baseline = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", bare], capture_output=True, text=True, check=True
            ).stdout
        )
    )
    offenders = [m for m in loaded if m.startswith(FORBIDDEN) and m not in baseline]
    assert offenders == []
    assert "prefect" not in loaded  # not even prefect itself


def test_missing_extra_names_the_install_command() -> None:
    with pytest.raises(MissingExtraError) as info:
        require("oxeo_flows_surely_missing_module", "gcp")
    assert "pip install 'oxeo-flows[gcp]'" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, OxeoFlowsError)
    assert info.value.extra == "gcp"
