"""`ensure_pool` against the real Prefect server: create, unchanged (no write), merge, adopt."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from oxeo_flows.errors import ConfigError, PoolError
from oxeo_flows.pools import MANAGED_MARKER, aensure_pool, default_base_job_template, ensure_pool


def _name(prefix: str = "pool") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _pool_calls(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(m, p) for m, p in seen if "/work_pools" in p]


def _read(name: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_work_pool(name)


def test_default_template_is_the_workers() -> None:
    t = default_base_job_template("process")
    assert set(t) == {"job_configuration", "variables"}
    assert "working_dir" in t["variables"]["properties"]
    t["variables"]["properties"].clear()  # a copy: the next call is unaffected
    assert "working_dir" in default_base_job_template("process")["variables"]["properties"]


def test_unknown_type_and_key_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no-such-type"):
        default_base_job_template("no-such-type")
    with pytest.raises(ConfigError, match=r"'working_dri'.*did you mean 'working_dir'.*Valid keys"):
        ensure_pool("x", type="process", defaults={"working_dri": "/srv"})


def test_create_then_unchanged_without_write(
    prefect_server: str, requests: list[tuple[str, str]]
) -> None:
    name = _name()
    first = ensure_pool(
        name, type="process", defaults={"working_dir": "/srv", "env": {"A": "1"}}, description="d"
    )
    assert first.action == "created"
    assert first.changes["variables.working_dir.default"] == (None, "/srv")
    stored = _read(name)
    # The marker survives the round trip through the server.
    assert stored.base_job_template[MANAGED_MARKER]["managed-by"] == "oxeo-flows"
    assert stored.base_job_template[MANAGED_MARKER]["keys"] == ["env", "working_dir"]
    assert stored.base_job_template["variables"]["properties"]["working_dir"]["default"] == "/srv"
    assert stored.description == "d"

    requests.clear()
    second = ensure_pool(
        name, type="process", defaults={"working_dir": "/srv", "env": {"A": "1"}}, description="d"
    )
    assert second.action == "unchanged"
    assert second.changes == {}
    calls = _pool_calls(requests)
    assert calls == [("GET", f"/api/work_pools/{name}")]


def test_update_keeps_user_edits_and_resets_dropped_keys(prefect_server: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    name = _name()
    ensure_pool(name, type="process", defaults={"working_dir": "/srv", "stream_output": False})
    # A user edits the pool in the UI: another variable's default and the title.
    template = _read(name).base_job_template
    template["variables"]["properties"]["command"]["default"] = "python -X dev -m prefect"
    template["variables"]["properties"]["working_dir"]["title"] = "Where"
    with get_client(sync_client=True) as client:
        client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))

    result = ensure_pool(name, type="process", defaults={"working_dir": "/data"})
    assert result.action == "updated"
    assert result.changes["variables.working_dir.default"] == ("/srv", "/data")
    # stream_output was ours and is no longer set: back to the type's default (True).
    assert result.changes["variables.stream_output.default"] == (False, True)
    props = _read(name).base_job_template["variables"]["properties"]
    assert props["command"]["default"] == "python -X dev -m prefect"  # user edit kept
    assert props["working_dir"]["title"] == "Where"  # user edit kept
    assert props["working_dir"]["default"] == "/data"


def test_unmanaged_pool_needs_adopt(prefect_server: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    name = _name()
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(
                name=name, type="process", base_job_template=default_base_job_template("process")
            )
        )
    with pytest.raises(PoolError, match="adopt=True"):
        ensure_pool(name, type="process", defaults={"working_dir": "/srv"})
    preview = ensure_pool(
        name, type="process", defaults={"working_dir": "/srv"}, adopt=True, dry_run=True
    )
    assert preview.dry_run
    assert preview.action == "updated"
    assert MANAGED_MARKER not in _read(name).base_job_template  # dry run wrote nothing
    adopted = ensure_pool(name, type="process", defaults={"working_dir": "/srv"}, adopt=True)
    assert adopted.action == "updated"
    # Managed from now on: no adopt needed.
    assert ensure_pool(name, type="process", defaults={"working_dir": "/srv"}).action == "unchanged"


def test_type_mismatch_and_dry_run_create(prefect_server: str) -> None:
    name = _name()
    dry = ensure_pool(name, type="process", defaults={}, dry_run=True)
    assert (dry.action, dry.dry_run) == ("created", True)
    with pytest.raises(PoolError):
        _read_or_error(name)
    ensure_pool(name, type="process", defaults={})
    with pytest.raises(PoolError, match="type 'process', not 'vertex-ai'"):
        ensure_pool(name, type="vertex-ai", defaults={})


def _read_or_error(name: str) -> None:
    from prefect.exceptions import ObjectNotFound

    try:
        _read(name)
    except ObjectNotFound as exc:
        msg = "not found"
        raise PoolError(msg) from exc


def test_concurrency_limit_and_api_errors(prefect_server: str) -> None:
    name = _name()
    ensure_pool(name, type="process", defaults={}, concurrency_limit=2)
    assert _read(name).concurrency_limit == 2
    result = ensure_pool(name, type="process", defaults={}, concurrency_limit=3)
    assert result.changes == {"concurrency_limit": (2, 3)}
    with pytest.raises(ConfigError, match="concurrency_limit -1"):
        ensure_pool(_name(), type="process", defaults={}, concurrency_limit=-1)


def test_unreachable_api_is_pool_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests._util import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    with (
        temporary_settings({PREFECT_API_URL: url}),
        pytest.raises(PoolError, match=r"could not .* work pool.*PREFECT_API_URL"),
    ):
        ensure_pool(_name(), type="process", defaults={})


def test_async_twin(prefect_server: str) -> None:
    import asyncio

    name = _name()

    async def twice() -> tuple[str, str]:
        first = await aensure_pool(name, type="process", defaults={"working_dir": "/a"})
        second = await aensure_pool(name, type="process", defaults={"working_dir": "/a"})
        return first.action, second.action

    assert asyncio.run(twice()) == ("created", "unchanged")


def test_adopting_an_empty_template_and_restoring_a_deleted_variable(prefect_server: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate

    name = _name()
    with get_client(sync_client=True) as client:
        # A pool created from Python without a template is stored as {}.
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))
    adopted = ensure_pool(name, type="process", defaults={"working_dir": "/srv"}, adopt=True)
    assert adopted.action == "updated"
    template = _read(name).base_job_template
    assert set(template["job_configuration"]) >= {"command", "env", "working_dir"}

    # Someone deletes our variable from the schema (and its use in the job configuration).
    del template["variables"]["properties"]["working_dir"]
    template["job_configuration"]["working_dir"] = None
    with get_client(sync_client=True) as client:
        client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    restored = ensure_pool(name, type="process", defaults={"working_dir": "/srv"})
    assert restored.action == "updated"
    assert restored.changes["variables.working_dir"][0] is None
    props = _read(name).base_job_template["variables"]["properties"]
    assert props["working_dir"]["default"] == "/srv"
