"""`apply_stack` against the real Prefect test server (writes counted by a loopback proxy)."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows.apply import (
    MANAGED_BLOCKS_VARIABLE,
    MANAGED_TAG,
    UNMANAGED_NOTE,
    ApplyPlan,
    apply_stack,
)
from oxeo_flows.errors import ApplyError, ConfigError
from oxeo_flows.pools import MANAGED_MARKER
from tests.apply._stacks import assert_blocks_marked, full_stack, invalid_pool_stack
from tests.fakes.proxy import CountingProxy


@pytest.fixture(autouse=True)
def _registry_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker_registry_credentials() loads "registry-password" from the env secret source.
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-registry-password")


def _by_name(plan: ApplyPlan) -> dict[str, Any]:
    return {item.name: item for item in plan.items}


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def test_first_apply_creates_second_apply_writes_nothing(
    counted: CountingProxy, stack_file: Any, uid: str
) -> None:
    stack_file(full_stack(uid))
    plan = apply_stack()
    items = _by_name(plan)
    expected = {
        f"vertex-{uid}",
        f"docker-{uid}",
        f"process-{uid}",
        f"aws-{uid}",
        f"code-{uid}",
        f"ghcr-{uid}",
        f"greeting-{uid}",
        f"tiles-{uid}",
    }
    assert expected <= set(items)
    assert all(items[n].action == "create" and items[n].applied for n in expected)
    assert plan.writes >= len(expected)
    assert counted.writes, "the first apply must write"

    with _client() as client:
        pool = client.read_work_pool(f"vertex-{uid}")
        assert pool.base_job_template[MANAGED_MARKER]["managed-by"] == "oxeo-flows"
        props = pool.base_job_template["variables"]["properties"]
        assert props["machine_type"]["default"] == "n1-standard-4"
        assert props["network"]["default"] == "projects/123456789012/global/networks/dask"
        docker = client.read_work_pool(f"docker-{uid}")
        ref = docker.base_job_template["variables"]["properties"]["registry_credentials"]
        assert "$ref" in ref["default"]
        var = client.read_variable_by_name(f"tiles-{uid}")
        assert var is not None
        assert var.value == ["31UFU", "31UFT"]
        assert MANAGED_TAG in var.tags
        process = client.read_work_pool(f"process-{uid}")
        assert process.concurrency_limit == 4
    assert_blocks_marked(uid)

    counted.reset()
    again = apply_stack()
    assert counted.writes == []
    assert again.writes == 0
    assert not again.has_drift
    assert {i.action for i in again.items} == {"unchanged"}
    assert counted.calls, "the second apply still reads"


def test_edited_stack_updates_only_what_changed(
    counted: CountingProxy, stack_file: Any, uid: str
) -> None:
    stack_file(full_stack(uid))
    apply_stack()
    stack_file(full_stack(uid, machine="n1-highmem-8", greeting="bonjour"))
    counted.reset()
    plan = apply_stack()
    changed = {i.name: i for i in plan.items if i.action != "unchanged"}
    assert set(changed) == {f"vertex-{uid}", f"greeting-{uid}"}
    assert changed[f"vertex-{uid}"].changes["variables.machine_type.default"] == (
        "n1-standard-4",
        "n1-highmem-8",
    )
    assert changed[f"greeting-{uid}"].changes == {"value": ("hello", "bonjour")}
    assert plan.writes == 2
    assert len(counted.writes) == 2
    methods = sorted(m for m, _ in counted.writes)
    assert methods == ["PATCH", "PATCH"]


def test_dry_run_writes_nothing(counted: CountingProxy, stack_file: Any, uid: str) -> None:
    stack_file(full_stack(uid))
    plan = apply_stack(dry_run=True)
    assert counted.writes == []
    assert plan.dry_run
    assert plan.has_drift
    assert plan.writes == 0
    assert {i.action for i in plan.items if i.name != MANAGED_BLOCKS_VARIABLE} == {"create"}
    with _client() as client:
        assert client.read_variable_by_name(f"greeting-{uid}") is None


def test_one_invalid_pool_writes_nothing(counted: CountingProxy, stack_file: Any, uid: str) -> None:
    stack_file(invalid_pool_stack(uid))
    with pytest.raises(ConfigError) as info:
        apply_stack()
    message = str(info.value)
    assert f"pools.broken-{uid}" in message
    assert "nothing was written" in message
    assert "image" in message
    assert counted.writes == []
    assert counted.calls == [], "validation happens before any API call"
    from prefect.exceptions import ObjectNotFound

    with _client() as client, pytest.raises(ObjectNotFound):
        client.read_work_pool(f"vertex-{uid}")


def test_unmanaged_objects_are_left_alone_unless_adopted(
    counted: CountingProxy, stack_file: Any, uid: str
) -> None:
    from prefect.client.schemas.actions import VariableCreate, WorkPoolCreate

    with _client() as client:
        client.create_variable(VariableCreate(name=f"greeting-{uid}", value="by hand"))
        client.create_work_pool(WorkPoolCreate(name=f"process-{uid}", type="process"))
    stack_file(full_stack(uid))
    counted.reset()
    with pytest.raises(ApplyError) as info:
        apply_stack()
    message = str(info.value)
    assert f"variable 'greeting-{uid}'" in message
    assert f"process-{uid}" in message
    assert "--adopt" in message
    assert counted.writes == []

    # A read-only plan (apply --dry-run / --check) shows them as drift, with the reason.
    preview = _by_name(apply_stack(dry_run=True))
    assert preview[f"greeting-{uid}"].note == UNMANAGED_NOTE
    assert preview[f"process-{uid}"].note == UNMANAGED_NOTE
    assert preview[f"process-{uid}"].action == "update"
    assert counted.writes == []

    plan = apply_stack(adopt=True)
    items = _by_name(plan)
    assert items[f"greeting-{uid}"].action == "update"
    assert items[f"greeting-{uid}"].note == "adopted"
    assert items[f"greeting-{uid}"].changes["value"] == ("by hand", "hello")
    with _client() as client:
        var = client.read_variable_by_name(f"greeting-{uid}")
        assert var is not None
        assert MANAGED_TAG in var.tags
        pool = client.read_work_pool(f"process-{uid}")
        assert MANAGED_MARKER in pool.base_job_template
    counted.reset()
    assert apply_stack().writes == 0
    assert counted.writes == []


def test_failure_half_way_reports_what_was_applied(
    counted: CountingProxy, stack_file: Any, uid: str
) -> None:
    stack_file(full_stack(uid))
    counted.fail_next_write("/work_pools")
    with pytest.raises(ApplyError) as info:
        apply_stack()
    plan = info.value.plan
    assert isinstance(plan, ApplyPlan)
    applied = {i.name for i in plan.items if i.applied}
    assert {f"greeting-{uid}", f"code-{uid}", f"aws-{uid}"} <= applied
    failed_pool = next(i for i in plan.items if i.kind == "pool" and not i.applied)
    assert failed_pool.action == "create"
    message = str(info.value)
    assert "Applied before the failure" in message
    assert f"greeting-{uid}" in message
    # Running again finishes the job: what was applied shows as unchanged.
    again = apply_stack()
    items = _by_name(again)
    assert items[f"greeting-{uid}"].action == "unchanged"
    assert any(i.kind == "pool" and i.applied for i in again.items)


def test_async_variant_plans_the_same(counted: CountingProxy, stack_file: Any, uid: str) -> None:
    import asyncio

    from oxeo_flows.apply import aapply_stack

    stack_file(full_stack(uid))
    plan = asyncio.run(aapply_stack(dry_run=True))
    assert counted.writes == []
    assert {i.name for i in plan.items} >= {f"vertex-{uid}", f"greeting-{uid}"}
    assert plan.has_drift
