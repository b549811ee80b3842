"""`apply_stack` when the Prefect server loses an answer, dies mid-apply, or is not there at all.

A real Prefect test server behind `DroppingProxy` (a loopback HTTP proxy that forwards for real,
so the server commits what it receives, then drops the answer or stops listening). Timeouts are
small so the tests return quickly; no test asserts a duration, only that apply returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from oxeo_flows.apply import ApplyPlan, apply_stack
from oxeo_flows.cli import app
from oxeo_flows.errors import ApplyError, ConfigError
from tests._util import free_port
from tests.apply._stacks import full_stack
from tests.fakes.dropping_proxy import DroppingProxy

runner = CliRunner()


@pytest.fixture(autouse=True)
def _registry_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-registry-password")


@pytest.fixture
def nowhere(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PREFECT_API_URL at a loopback port where nothing listens: the server is gone."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        monkeypatch.setenv("PREFECT_API_URL", url)
        yield url


def _statuses(plan: ApplyPlan) -> dict[str, str]:
    return {item.name: item.status for item in plan.items}


def _pools(uid: str) -> list[str]:
    return [f"vertex-{uid}", f"docker-{uid}", f"process-{uid}"]


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_lost_answer_is_unknown_later_items_not_applied(
    faulty: DroppingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(full_stack(uid))
    first, *later = _pools(uid)
    faulty.drop_after("/work_pools/")  # the first pool create reaches the server; its answer not
    with pytest.raises(ApplyError) as info:
        # A lost answer fails at once; the timeout only has to outlast the reads on a busy CI.
        apply_stack(timeout=15)
    plan = info.value.plan
    assert isinstance(plan, ApplyPlan)
    status = _statuses(plan)
    assert status[first] == "unknown"
    assert all(status[name] == "not applied" for name in later)
    assert {status[f"code-{uid}"], status[f"greeting-{uid}"]} == {"applied"}
    assert [i.name for i in plan.unknown] == [first]
    message = str(info.value)
    assert f"Unknown (sent, but no answer came back): pool {first!r}" in message
    assert f"Not applied: pool {later[0]!r}, pool {later[1]!r}" in message
    assert "re-run apply; it is idempotent" in message
    # Sent once: Prefect's client retries (which would send the create again) are off.
    pool_creates = [c for c in faulty.writes if c[1].rstrip("/").endswith("/work_pools")]
    assert len(pool_creates) == 1

    # The server did commit it: running apply again shows it unchanged and finishes the rest.
    again = _statuses(apply_stack(timeout=15))
    assert again[first] == "unchanged"
    assert all(again[name] == "applied" for name in later)


def test_server_dying_mid_apply_stops_within_the_timeout(
    faulty: DroppingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(full_stack(uid))
    first, second, third = _pools(uid)
    faulty.die_after("/work_pools/")  # answered, then the server is gone
    with pytest.raises(ApplyError) as info:
        # The bound covers the reads before the first write on a busy machine (1.5 s did not
        # always); the dead server then refuses at once and the apply stops at the bound.
        apply_stack(timeout=8)
    plan = info.value.plan
    assert isinstance(plan, ApplyPlan)
    status = _statuses(plan)
    assert status[first] == "applied"
    assert status[second] == "not applied", "its write never left: the connection was refused"
    assert status[third] == "not applied"
    assert plan.unknown == []
    message = str(info.value)
    assert faulty.url in message
    assert "PREFECT_API_URL" in message
    assert "re-run apply; it is idempotent" in message


def test_server_gone_fails_within_the_timeout_naming_the_url(
    nowhere: str, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(full_stack(uid))
    with pytest.raises(ApplyError) as info:
        apply_stack(timeout=1)
    message = str(info.value)
    assert "nothing was written" in message
    assert nowhere in message
    assert "PREFECT_API_URL" in message
    assert "--timeout" in message
    assert "re-run apply; it is idempotent" in message
    plan = info.value.plan
    assert isinstance(plan, ApplyPlan)
    assert plan.writes == 0


@pytest.fixture
def hanging(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PREFECT_API_URL at a loopback socket that accepts connections and never answers."""
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # the kernel accepts; nobody ever reads or answers
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
        with temporary_settings({PREFECT_API_URL: url}):
            monkeypatch.setenv("PREFECT_API_URL", url)
            yield url


def test_hanging_server_gives_up_and_leaves_prefect_settings_alone(
    hanging: str, stack_file: Callable[..., Any], uid: str
) -> None:
    import contextvars
    import threading

    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_CLIENT_MAX_RETRIES

    before = (PREFECT_CLIENT_MAX_RETRIES.value(), PREFECT_API_REQUEST_TIMEOUT.value())
    stack_file(full_stack(uid))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            apply_stack(timeout=1)
        except ApplyError as exc:
            errors.append(exc)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    thread.start()
    # While the apply waits, the rest of the process keeps Prefect's own settings.
    seen = (PREFECT_CLIENT_MAX_RETRIES.value(), PREFECT_API_REQUEST_TIMEOUT.value())
    thread.join(timeout=120)
    assert not thread.is_alive(), "apply did not give up"
    assert seen == before
    assert (PREFECT_CLIENT_MAX_RETRIES.value(), PREFECT_API_REQUEST_TIMEOUT.value()) == before
    assert len(errors) == 1
    assert hanging in str(errors[0])
    assert "nothing was written" in str(errors[0])


def test_timeout_must_be_positive_seconds(stack_file: Callable[..., Any], uid: str) -> None:
    stack_file(full_stack(uid))
    for bad in (0, -1, float("nan"), True, "30"):
        with pytest.raises(ConfigError, match="apply timeout") as info:
            apply_stack(dry_run=True, timeout=bad)  # type: ignore[arg-type]
        assert "--timeout" in str(info.value)
    result = _run("apply", "--timeout", "0")
    assert result.exit_code == 1
    assert "apply timeout 0.0 is invalid" in result.output
    assert "Traceback" not in result.output


def test_cli_lost_answer_shows_unknown_without_traceback(
    faulty: DroppingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    stack_file(full_stack(uid))
    faulty.drop_after("/work_pools/")
    result = _run("apply", "--timeout", "15")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "? unknown" in result.output
    assert "✗ not applied" in result.output
    assert "re-run apply; it is idempotent" in result.output
    assert "s3cr3t-registry-password" not in result.output

    as_json = _run("apply", "--check", "--json", "--timeout", "15")
    assert as_json.exit_code == 2, "the committed pool is unchanged; the two others drift"


def test_cli_server_gone_names_the_url_without_traceback(
    nowhere: str, stack_file: Callable[..., Any], uid: str
) -> None:
    import json

    stack_file(full_stack(uid))
    result = _run("apply", "--timeout", "1")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert nowhere in result.output
    assert "re-run apply" in result.output
    data = json.loads(_run("apply", "--json", "--timeout", "1").stdout)
    assert data["type"] == "ApplyError"
    assert nowhere in data["error"]


def test_cli_server_dying_mid_apply_json_gives_each_status(
    faulty: DroppingProxy, stack_file: Callable[..., Any], uid: str
) -> None:
    import json

    stack_file(full_stack(uid))
    first, second, third = _pools(uid)
    faulty.die_after("/work_pools/", answer=False)  # committed, unanswered, then gone
    result = _run("apply", "--json", "--timeout", "1.5")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    data = json.loads(result.stdout)
    assert data["type"] == "ApplyError"
    status = {i["name"]: i["status"] for i in data["plan"]["items"]}
    assert (status[first], status[second], status[third]) == (
        "unknown",
        "not applied",
        "not applied",
    )
    assert status[f"greeting-{uid}"] == "applied"
    assert data["plan"]["unknown"] == 1
    assert "re-run apply; it is idempotent" in data["error"]
