"""Two applies at once against the real Prefect test server: ownership survives, state agrees.

0.2.0 kept the managed blocks in one shared variable that every apply rewrote, so two stacks
applied at once dropped each other's entries (3 of 3 rounds) and the loser's next apply refused
its own blocks. Each block now has its own marker variable, created if absent.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

import pytest

from oxeo_flows.apply import MANAGED_TAG, ApplyPlan, apply_stack
from oxeo_flows.pools import MANAGED_MARKER
from oxeo_flows.stack import resolve_stack
from tests.apply._stacks import assert_blocks_marked, full_stack, pair_stack

ROUNDS = 3


@pytest.fixture(autouse=True)
def _registry_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", "s3cr3t-registry-password")


def _together(*calls: Callable[[], ApplyPlan]) -> list[ApplyPlan | BaseException]:
    """Run the calls in threads released at the same moment; their results (or errors)."""
    barrier = threading.Barrier(len(calls))
    results: list[ApplyPlan | BaseException] = [RuntimeError("did not run")] * len(calls)

    def run(index: int, call: Callable[[], ApplyPlan]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as exc:
            results[index] = exc

    # Each thread gets a copy of this context (the test server's PREFECT_API_URL lives there).
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, i, call))
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def _plan(result: ApplyPlan | BaseException) -> ApplyPlan:
    if isinstance(result, BaseException):
        raise AssertionError(f"a concurrent apply failed: {result}") from result
    return result


def _all_unchanged(plan: ApplyPlan) -> None:
    actions = {item.name: item.action for item in plan.items}
    assert set(actions.values()) == {"unchanged"}, actions
    assert plan.writes == 0


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_stacks_applied_at_once_keep_their_blocks(
    prefect_api: str, stack_file: Callable[..., Any], round_: int
) -> None:
    import uuid

    one, two = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    stack_file(pair_stack(one, two))
    first, second = resolve_stack(f"one-{one}"), resolve_stack(f"two-{two}")

    results = _together(lambda: apply_stack(first), lambda: apply_stack(second))
    for result in results:
        plan = _plan(result)
        assert {i.status for i in plan.items} == {"applied"}, plan.to_dict()
    assert_blocks_marked(one)
    assert_blocks_marked(two)

    # Both stacks still recognise their own blocks: nothing to write, nothing refused.
    _all_unchanged(apply_stack(first))
    _all_unchanged(apply_stack(second))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_one_stack_applied_twice_at_once_ends_consistent(
    prefect_api: str, stack_file: Callable[..., Any], round_: int
) -> None:
    import uuid

    uid = uuid.uuid4().hex[:8]
    stack_file(full_stack(uid))
    stack = resolve_stack("prod")

    results = _together(lambda: apply_stack(stack), lambda: apply_stack(stack))
    plans = [_plan(result) for result in results]
    for plan in plans:
        # Each saw every object as created or updated by itself or by the other: never refused.
        assert {i.status for i in plan.items} == {"applied"}, plan.to_dict()
    assert_blocks_marked(uid)
    with _client() as client:
        for pool in (f"vertex-{uid}", f"docker-{uid}", f"process-{uid}"):
            template = client.read_work_pool(pool).base_job_template
            assert template[MANAGED_MARKER]["managed-by"] == "oxeo-flows"
        greeting = client.read_variable_by_name(f"greeting-{uid}")
        assert greeting is not None
        assert greeting.value == "hello"
        assert MANAGED_TAG in greeting.tags

    _all_unchanged(apply_stack(stack))
