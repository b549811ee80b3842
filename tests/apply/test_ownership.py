"""Block ownership: one marker variable per block, and the 0.2.0 registry still recognised."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oxeo_flows.apply import (
    BLOCK_MARKER_PREFIX,
    MANAGED_BLOCKS_VARIABLE,
    apply_stack,
    block_marker,
)
from oxeo_flows.errors import ApplyError, ConfigError
from tests.apply._stacks import block_names, full_stack
from tests.fakes.proxy import CountingProxy


@pytest.fixture(autouse=True)
def _registry_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-registry-password")


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _list_in_legacy_registry(entries: list[str]) -> list[str]:
    """Add entries to the 0.2.0 registry variable (shared by the session); its new value."""
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    with _client() as client:
        current = client.read_variable_by_name(MANAGED_BLOCKS_VARIABLE)
        if current is None:
            value = sorted(entries)
            client.create_variable(
                VariableCreate(name=MANAGED_BLOCKS_VARIABLE, value=value, tags=["oxeo-flows"])
            )
        else:
            value = sorted({*current.value, *entries})
            client.update_variable(VariableUpdate(name=MANAGED_BLOCKS_VARIABLE, value=value))
    return value


def test_blocks_of_0_2_0_are_recognised_and_migrated(
    counted: CountingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(full_stack(uid))
    apply_stack()
    # Back to what 0.2.0 left: the blocks exist, no marker variables.
    with _client() as client:
        for slug, name in block_names(uid):
            client.delete_variable_by_name(block_marker(slug, name))

    # Without a marker and not in the registry, a block is someone else's: refused.
    with pytest.raises(ApplyError) as info:
        apply_stack()
    assert f"block 's3-bucket/code-{uid}' already exists and was not created" in str(info.value)

    registry = _list_in_legacy_registry([f"{slug}/{name}" for slug, name in block_names(uid)])
    counted.reset()
    plan = apply_stack()
    items = {i.name: i for i in plan.items if i.kind == "block"}
    for slug, name in block_names(uid):
        assert items[name].action == "update"
        assert items[name].changes == {
            "(marker)": (f"listed in {MANAGED_BLOCKS_VARIABLE}", block_marker(slug, name))
        }
        assert items[name].status == "applied"
    # Only the three markers were written; the registry is read, never written.
    assert sorted(counted.writes) == [("POST", "/api/variables/")] * 3
    with _client() as client:
        for slug, name in block_names(uid):
            assert client.read_variable_by_name(block_marker(slug, name)) is not None
        legacy = client.read_variable_by_name(MANAGED_BLOCKS_VARIABLE)
        assert legacy is not None
        assert sorted(legacy.value) == registry

    counted.reset()
    assert {i.action for i in apply_stack().items} == {"unchanged"}
    assert counted.writes == []


def test_adopting_a_block_creates_its_marker(
    counted: CountingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    from prefect_aws import AwsCredentials

    AwsCredentials(region_name="eu-west-1").save(f"aws-{uid}")
    stack_file(full_stack(uid))
    preview = {i.name: i for i in apply_stack(dry_run=True).items}
    assert preview[f"aws-{uid}"].changes["(marker)"] == (
        None,
        block_marker("aws-credentials", f"aws-{uid}"),
    )
    with pytest.raises(ApplyError, match="not created by oxeo-flows"):
        apply_stack()
    plan = {i.name: i for i in apply_stack(adopt=True).items}
    assert plan[f"aws-{uid}"].note == "adopted"
    assert plan[f"aws-{uid}"].status == "applied"
    counted.reset()
    assert {i.action for i in apply_stack().items} == {"unchanged"}
    assert counted.writes == []


def test_marker_names() -> None:
    assert block_marker("s3-bucket", "oxeo-code") == "oxeo_flows_block__s3-bucket__oxeo-code"
    long = block_marker("s3-bucket", "x" * 300)
    assert len(long) <= 255
    assert long.startswith(BLOCK_MARKER_PREFIX)
    assert long != block_marker("s3-bucket", "x" * 301)


def test_marker_names_are_reserved_in_variables(stack_file: Callable[..., Any], uid: str) -> None:
    reserved = block_marker("s3-bucket", f"code-{uid}")
    stack_file(full_stack(uid) + f'{reserved} = "mine"\n{MANAGED_BLOCKS_VARIABLE} = []\n')
    with pytest.raises(ConfigError) as info:
        apply_stack(dry_run=True)
    message = str(info.value)
    assert f"{reserved!r} is reserved by oxeo-flows" in message
    assert f"{MANAGED_BLOCKS_VARIABLE!r} is reserved by oxeo-flows" in message
    assert "rename the variable" in message
