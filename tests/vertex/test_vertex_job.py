"""`VertexJob` / `vertex_job`: stack defaults, overrides, bad input, and the idempotent pool."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from oxeo_flows import VertexJob, ensure_vertex_pool, vertex_job
from oxeo_flows._redact import register_secret_value
from oxeo_flows.errors import ConfigError
from oxeo_flows.network import GcpNetwork
from oxeo_flows.stack import load_stack
from tests.vertex.conftest import NUMBER, SA, STACK, with_credentials

GOOD: dict[str, Any] = {
    "image": "europe-docker.pkg.dev/p/r/i:1",
    "region": "europe-west4",
    "service_account": SA,
}
NET = GcpNetwork(project="oxeo-test", project_number=NUMBER, network="dask", region="europe-west4")


def test_stack_defaults_and_overrides(prod_stack: Any) -> None:
    job = vertex_job(stack=prod_stack)
    assert job.region == "europe-west4"  # from gcp.region
    assert job.service_account == SA  # from gcp.service-account
    assert job.max_run_time_hours == 24
    assert job.network_path == f"projects/{NUMBER}/global/networks/dask"
    assert job.api_key_secret == "projects/oxeo-test/secrets/prefect-api-key"
    other = vertex_job(
        stack=prod_stack,
        machine_type="n1-standard-16",
        accelerator_type=None,
        accelerator_count=None,
    )
    assert other.machine_type == "n1-standard-16"
    assert "accelerator_type" not in other.job_variables()
    assert job.job_variables() == vertex_job(stack=prod_stack).job_variables()  # deterministic


def test_environment_overrides_the_file(stack_file: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stack_file(STACK)
    monkeypatch.setenv("OXEO_FLOWS_VERTEX__MAX_RUN_TIME_HOURS", "48")
    assert vertex_job().job_variables()["maximum_run_time_hours"] == 48


def test_minimal_job_and_frozen() -> None:
    job = VertexJob(**GOOD, network=NET, reserved_ip_ranges=["vertex-peering"])
    variables = job.job_variables()
    assert variables["maximum_run_time_hours"] == 24
    assert "command" not in variables  # Prefect's default command
    assert "env" not in variables
    with pytest.raises(Exception, match="frozen"):
        job.image = "other"  # type: ignore[misc]


def test_accelerator_type_alone_means_one() -> None:
    variables = VertexJob(**GOOD, accelerator_type="NVIDIA_TESLA_T4").job_variables()
    assert (variables["accelerator_type"], variables["accelerator_count"]) == ("NVIDIA_TESLA_T4", 1)


def test_private_network_is_the_default(stack_file: Any) -> None:
    stack_file(
        '[tool.oxeo-flows.stacks.s.vertex]\nimage = "i:1"\nregion = "europe-west4"\n'
        f'service-account = "{SA}"\n'
    )
    with pytest.raises(ConfigError, match=r"private by default.*private-network = false"):
        vertex_job(stack=load_stack("s"))
    with pytest.warns(UserWarning, match="not peered"):
        job = vertex_job(stack=load_stack("s", overrides={"vertex": {"private_network": False}}))
    assert "network" not in job.job_variables()


def test_pool_section(stack_file: Any) -> None:
    stack_file(
        STACK + '\n[tool.oxeo-flows.stacks.prod.pools.gpu]\ntype = "vertex-ai"\nimage = "gpu:1"\n'
        'machine-type = "g2-standard-8"\naccelerator-type = "NVIDIA_L4"\naccelerator-count = 1\n'
        '[tool.oxeo-flows.stacks.prod.pools.local]\ntype = "process"\n'
    )
    stack = load_stack()
    job = vertex_job(stack=stack, pool="gpu")
    assert (job.image, job.accelerator_type, job.network_path) == (
        "gpu:1",
        "NVIDIA_L4",
        f"projects/{NUMBER}/global/networks/dask",
    )
    with pytest.raises(ConfigError, match="type 'process', not 'vertex-ai'"):
        vertex_job(stack=stack, pool="local")
    with pytest.raises(ConfigError, match="no pool 'nope'"):
        vertex_job(stack=stack, pool="nope")


# ----------------------------------------------------------------------------- bad input

BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("network by name only", {"network": "dask"}, "network", r"projects/<PROJECT NUMBER>"),
    (
        "project id instead of number",
        {"network": "projects/oxeo-test/global/networks/dask"},
        "network",
        r"project NUMBER",
    ),
    (
        "GcpNetwork without a number",
        {"network": GcpNetwork(project="oxeo-test", network="dask")},
        "network",
        "project-number is not set",
    ),
    (
        "reserved ranges without network",
        {"reserved_ip_ranges": ["r1"]},
        "(top level)",
        "without a network",
    ),
    (
        "bad reserved range",
        {"network": NET, "reserved_ip_ranges": ["Bad_Range"]},
        "reserved-ip-ranges",
        "not a valid reserved IP range",
    ),
    (
        "accelerator count without type",
        {"accelerator_count": 2},
        "(top level)",
        "accelerator_type is not set",
    ),
    (
        "lowercase accelerator",
        {"accelerator_type": "nvidia-t4"},
        "accelerator-type",
        "accelerator type",
    ),
    (
        "too many accelerators",
        {"accelerator_type": "NVIDIA_L4", "accelerator_count": 64},
        "accelerator-count",
        "16",
    ),
    ("unknown strategy", {"scheduling_strategy": "CHEAP"}, "scheduling-strategy", "STANDARD"),
    (
        "max wait without flex start",
        {"max_wait_hours": 1.0},
        "(top level)",
        "only applies to FLEX_START",
    ),
    ("uppercase label key", {"labels": {"Team": "x"}}, "labels", "not a valid GCP label key"),
    (
        "too long label value",
        {"labels": {"team": "x" * 64}},
        "labels",
        "not a valid GCP label value",
    ),
    ("too many labels", {"labels": {f"k{i}": "v" for i in range(51)}}, "labels", "too many"),
    (
        "region mismatch",
        {"region": "europe-west1", "network": NET},
        "(top level)",
        "differs from the network's region",
    ),
    ("zone as region", {"region": "europe-west4-a"}, "region", "is a zone"),
    (
        "SecretStr in env",
        {"env": {"TOKEN": SecretStr("s3cr3t-value")}},
        "env",
        r"Pass the secret's NAME",
    ),
    ("API key in env", {"env": {"PREFECT_API_KEY": "pnu_x"}}, "env", "api_key_secret"),
    ("bad env name", {"env": {"1BAD": "x"}}, "env", "not a valid environment variable name"),
    ("missing service account", {"service_account": None}, "service-account", "is required"),
    (
        "not a service account",
        {"service_account": "me@gmail.com"},
        "service-account",
        "not a service account",
    ),
    ("missing image", {"image": None}, "image", "is required"),
    (
        "zero run time",
        {"max_run_time_hours": 0},
        "max-run-time-hours",
        "greater than or equal to 1",
    ),
    ("small boot disk", {"boot_disk_size_gb": 50}, "boot-disk-size-gb", "100"),
    ("unknown disk type", {"boot_disk_type": "ssd"}, "boot-disk-type", "pd-ssd"),
    ("bad machine type", {"machine_type": "big machine"}, "machine-type", "machine type"),
    (
        "bad api key secret",
        {"api_key_secret": "prefect-key"},
        "api-key-secret",
        "projects/<PROJECT>",
    ),
    ("unknown field", {"machine_typ": "n1"}, "machine-typ", "did you mean 'machine-type'"),
]


@pytest.mark.parametrize(("case", "change", "field", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_field(
    case: str, change: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        VertexJob(**{**GOOD, **change})
    text = str(info.value)
    # A problem across fields has no key: it is listed on its own line.
    assert (f"- {field}:" if field != "(top level)" else "\n  - ") in text, text
    assert re.search(message, text), text
    assert "s3cr3t-value" not in text


def test_loaded_secret_value_in_env_is_refused() -> None:
    register_secret_value("value-from-load-secret-123")
    with pytest.raises(
        ConfigError, match=r"env\['TOKEN'\] holds a value loaded with load_secret"
    ) as info:
        VertexJob(**GOOD, env={"TOKEN": "value-from-load-secret-123"})
    assert "value-from-load-secret-123" not in str(info.value)
    assert "load_secret(os.environ['TOKEN_SECRET'])" in str(info.value)


def test_stack_errors_say_where_the_value_came_from(
    stack_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file(STACK)
    monkeypatch.setenv("OXEO_FLOWS_VERTEX__SCHEDULING_STRATEGY", "STANDARD")
    monkeypatch.setenv("OXEO_FLOWS_VERTEX__MAX_WAIT_HOURS", "2")
    # The section shares the spec's checks: the stack itself is refused, where it is loaded.
    with pytest.raises(ConfigError, match=r"(?s)stack .prod.*vertex: .*only applies to FLEX_START"):
        load_stack()
    monkeypatch.delenv("OXEO_FLOWS_VERTEX__MAX_WAIT_HOURS")
    with pytest.raises(ConfigError, match=r"labels: .*\[from argument\]"):
        vertex_job(labels={"BAD": "x"})
    monkeypatch.setenv("OXEO_FLOWS_VERTEX__REGION", "europe-west1")
    with pytest.raises(ConfigError, match="differs from the network's region"):
        vertex_job()


def test_missing_service_account_in_stack(stack_file: Any) -> None:
    stack_file(STACK.replace(f'service-account = "{SA}"\n', ""))
    with pytest.raises(ConfigError, match=r"service-account: is required.*gcp.service-account"):
        vertex_job()


# ----------------------------------------------------------------------------- pool


def test_ensure_vertex_pool_twice_writes_once(
    prod_stack: Any, gcp_credentials_block: str, requests: list[tuple[str, str]]
) -> None:
    from prefect.client.orchestration import get_client

    name = f"vertex-twice-{uuid.uuid4().hex[:8]}"
    job = vertex_job(stack=prod_stack)
    first = ensure_vertex_pool(name, job, stack=with_credentials(gcp_credentials_block))
    assert first.action == "created"
    with get_client(sync_client=True) as client:
        stored = client.read_work_pool(name).base_job_template["variables"]["properties"]
    assert stored["maximum_run_time_hours"]["default"] == 24
    assert stored["network"]["default"] == f"projects/{NUMBER}/global/networks/dask"
    assert set(stored["credentials"]["default"]["$ref"]) == {"block_document_id"}

    requests.clear()
    second = ensure_vertex_pool(name, job, stack=with_credentials(gcp_credentials_block))
    assert second.action == "unchanged"
    # One read of the pool, one of the credentials block; no write (the CSRF token GET is
    # Prefect's client bookkeeping, only sent before a write).
    assert requests == [
        (
            "GET",
            f"/api/block_types/slug/gcp-credentials/block_documents/name/{gcp_credentials_block}",
        ),
        ("GET", f"/api/work_pools/{name}"),
    ], requests

    # A changed default is one update, and says what changed.
    third = ensure_vertex_pool(
        name,
        vertex_job(stack=prod_stack, machine_type="n1-standard-8"),
        stack=with_credentials(gcp_credentials_block),
    )
    assert third.action == "updated"
    assert third.changes == {"variables.machine_type.default": ("n1-highmem-8", "n1-standard-8")}


def test_a_pool_is_checked_with_the_values_it_layers_over(stack_file: Any) -> None:
    # [vertex] sets n1-highmem-8; the pool only adds an L4, which n1 machines cannot take.
    stack_file(
        STACK + '\n[tool.oxeo-flows.stacks.prod.pools.gpu]\ntype = "vertex-ai"\n'
        'accelerator-type = "NVIDIA_L4"\naccelerator-count = 1\n'
    )
    with pytest.raises(ConfigError, match=r"(?s)pools\.gpu.*does not attach to 'n1-highmem-8'"):
        load_stack()
