"""`run_doctor` reads ``vertex.persistent-resource-id`` from the emulated Vertex AI API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oxeo_flows.doctor import run_doctor
from oxeo_flows.testing.vertex import VertexEmulator
from tests.doctor._stacks import clean_stack, one
from tests.fakes.gcp_rest import FakeGcpRest

RESOURCE = "projects/oxeo-main/locations/europe-west4/persistentResources/warm-pool"
IMAGE_LINE = 'image = "europe-docker.pkg.dev/oxeo-main/flows/extract:1"'


@pytest.fixture
def vertex() -> Iterator[VertexEmulator]:
    with VertexEmulator(execute=False) as emulator:
        yield emulator


def _stack(
    gcp: FakeGcpRest,
    moto: str,
    vertex: VertexEmulator | None,
    *,
    resource: str | None = "warm-pool",
    machine: str = "n1-standard-8",
) -> str:
    endpoints = f'compute = "{gcp.endpoint}"\nservice-networking = "{gcp.endpoint}"'
    if vertex is not None:
        endpoints += f'\naiplatform = "{vertex.endpoint}"'
    text = clean_stack(gcp.endpoint, moto, endpoints=endpoints)
    extra = f'\nmachine-type = "{machine}"'
    if resource is not None:
        extra += f'\npersistent-resource-id = "{resource}"'
    return text.replace(IMAGE_LINE, IMAGE_LINE + extra)


def _run(
    stack_file: Callable[..., Any],
    gcp: FakeGcpRest,
    env: str,
    vertex: VertexEmulator | None,
    **kw: Any,
) -> Any:
    stack_file(_stack(gcp, env, vertex, **kw))
    return run_doctor()


def test_running_resource_with_the_jobs_machine_is_ok(
    env: str, gcp: FakeGcpRest, vertex: VertexEmulator, stack_file: Callable[..., Any]
) -> None:
    vertex.add_persistent_resource(RESOURCE, state="RUNNING", machine_type="n1-standard-8")
    report = _run(stack_file, gcp, env, vertex)
    check = one(report, "vertex", "persistent-resource")
    assert (check.status, check.message) == ("ok", f"{RESOURCE} is RUNNING")
    assert one(report, "vertex", "persistent-resource machine-type").status == "ok"
    assert vertex.calls["GetPersistentResource"] == 1
    bad = [c for c in report.checks if c.status != "ok"]
    assert bad == [], bad


def test_missing_resource_fails_with_the_create_command(
    env: str, gcp: FakeGcpRest, vertex: VertexEmulator, stack_file: Callable[..., Any]
) -> None:
    report = _run(stack_file, gcp, env, vertex)
    check = one(report, "vertex", "persistent-resource")
    assert check.status == "fail"
    assert RESOURCE in check.message
    assert "does not exist" in check.message
    assert "vertex.persistent-resource-id of stack 'prod'" in check.message
    assert check.fix is not None
    assert "gcloud ai persistent-resources create --persistent-resource-id=warm-pool" in check.fix
    assert "--region=europe-west4" in check.fix
    assert "machine-type=n1-standard-8" in check.fix
    assert "unset vertex.persistent-resource-id" in check.fix
    assert not report.find("vertex", "persistent-resource machine-type")
    assert not report.ok


@pytest.mark.parametrize("state", ["PROVISIONING", "STOPPING", "UPDATING"])
def test_resource_not_yet_running_warns_naming_its_state(
    state: str,
    env: str,
    gcp: FakeGcpRest,
    vertex: VertexEmulator,
    stack_file: Callable[..., Any],
) -> None:
    vertex.add_persistent_resource(RESOURCE, state=state, machine_type="n1-standard-8")
    report = _run(stack_file, gcp, env, vertex)
    check = one(report, "vertex", "persistent-resource")
    assert check.status == "warn"
    assert f"is {state}, not RUNNING" in check.message
    assert check.fix is not None
    assert "RUNNING" in check.fix
    assert report.ok  # a warning does not fail the report


def test_resource_in_error_fails_with_its_error(
    env: str, gcp: FakeGcpRest, vertex: VertexEmulator, stack_file: Callable[..., Any]
) -> None:
    vertex.add_persistent_resource(RESOURCE, state="ERROR", machine_type="n1-standard-8")
    report = _run(stack_file, gcp, env, vertex)
    check = one(report, "vertex", "persistent-resource")
    assert check.status == "fail"
    assert f"{RESOURCE} is ERROR (quota exceeded)" in check.message
    assert check.fix is not None
    assert "unset vertex.persistent-resource-id" in check.fix
    assert not report.ok


def test_resource_without_the_jobs_machine_type_warns(
    env: str, gcp: FakeGcpRest, vertex: VertexEmulator, stack_file: Callable[..., Any]
) -> None:
    vertex.add_persistent_resource(RESOURCE, state="RUNNING", machine_type="n1-highmem-2")
    report = _run(stack_file, gcp, env, vertex, machine="n1-standard-8")
    assert one(report, "vertex", "persistent-resource").status == "ok"
    check = one(report, "vertex", "persistent-resource machine-type")
    assert check.status == "warn"
    assert "n1-standard-8" in check.message
    assert "pool-0 (n1-highmem-2)" in check.message
    assert check.fix is not None
    assert "vertex.machine-type" in check.fix


def test_key_unset_asks_nothing(
    env: str, gcp: FakeGcpRest, vertex: VertexEmulator, stack_file: Callable[..., Any]
) -> None:
    report = _run(stack_file, gcp, env, vertex, resource=None)
    assert not report.find("vertex", "persistent-resource")
    assert "GetPersistentResource" not in vertex.calls


def test_no_credentials_for_googles_endpoint_skips(
    env: str, gcp: FakeGcpRest, stack_file: Callable[..., Any]
) -> None:
    from oxeo_flows.gcp_api import adc_unavailable

    if adc_unavailable() is None:
        pytest.skip("Google credentials are available here (GCE, ADC or a key file)")
    report = _run(stack_file, gcp, env, None)
    check = one(report, "vertex", "persistent-resource")
    assert check.status == "skip"
    assert RESOURCE in check.message
    assert "no Google credentials" in check.message


def test_a_vertex_pool_with_its_own_resource_is_checked(
    env: str, gcp: FakeGcpRest, vertex: VertexEmulator, stack_file: Callable[..., Any]
) -> None:
    warm = "projects/oxeo-main/locations/europe-west4/persistentResources/flows-t4"
    vertex.add_persistent_resource(RESOURCE, state="RUNNING", machine_type="n1-standard-8")
    text = _stack(gcp, env, vertex) + (
        '\n[tool.oxeo-flows.stacks.prod.pools.warm]\ntype = "vertex-ai"\n'
        'persistent-resource-id = "flows-t4"\nmachine-type = "g2-standard-8"\n'
    )
    stack_file(text)
    report = run_doctor()
    assert one(report, "vertex", "persistent-resource").status == "ok"
    check = one(report, "vertex", "persistent-resource pools.warm")
    assert check.status == "fail"
    assert f"pools.warm.persistent-resource-id is 'flows-t4', but {warm}" in check.message
    assert check.fix is not None
    assert "machine-type=g2-standard-8" in check.fix
    assert "unset pools.warm.persistent-resource-id" in check.fix
    vertex.add_persistent_resource(warm, state="RUNNING", machine_type="g2-standard-8")
    report = run_doctor()
    assert one(report, "vertex", "persistent-resource pools.warm").status == "ok"
    assert one(report, "vertex", "persistent-resource pools.warm machine-type").status == "ok"
