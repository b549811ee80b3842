"""Concurrent lookups of one secret make exactly one backend call."""

from __future__ import annotations

import asyncio
import threading

from oxeo_flows.secrets import aload_secret, clear_secret_cache, load_secret
from tests.secrets.conftest import PROJECT


def test_50_threads_and_50_tasks_make_one_call(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "shared", "shared-value")
    fake_sm.delay = 0.3  # keep the first call in flight while the others arrive
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(51)

    def in_thread() -> None:
        start.wait()
        value = load_secret("shared").get_secret_value()
        with lock:
            results.append(value)

    async def in_tasks() -> list[str]:
        start.wait()  # release the threads together with the tasks
        values = await asyncio.gather(*(aload_secret("shared") for _ in range(50)))
        return [v.get_secret_value() for v in values]

    threads = [threading.Thread(target=in_thread) for _ in range(50)]
    for t in threads:
        t.start()
    task_values = asyncio.run(in_tasks())
    for t in threads:
        t.join(timeout=30)
    assert results == ["shared-value"] * 50
    assert task_values == ["shared-value"] * 50
    assert fake_sm.calls["AccessSecretVersion"] == 1


def test_cache_ttl_zero_still_shares_concurrent_calls(fake_sm, gcp_stack) -> None:
    gcp_stack(extra="secrets.cache-ttl = 0")
    fake_sm.add(PROJECT, "nocache", "v-nocache")
    fake_sm.delay = 0.2

    async def many() -> None:
        await asyncio.gather(*(aload_secret("nocache") for _ in range(20)))

    asyncio.run(many())
    assert fake_sm.calls["AccessSecretVersion"] == 1
    fake_sm.delay = 0
    load_secret("nocache")
    load_secret("nocache")
    assert fake_sm.calls["AccessSecretVersion"] == 3


def test_cache_hits_and_clear(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "cached", "old-value")
    assert load_secret("cached").get_secret_value() == "old-value"
    fake_sm.add(PROJECT, "cached", "new-value")
    assert load_secret("cached").get_secret_value() == "old-value"  # from the cache
    assert fake_sm.calls["AccessSecretVersion"] == 1
    clear_secret_cache()
    assert load_secret("cached").get_secret_value() == "new-value"
    assert fake_sm.calls["AccessSecretVersion"] == 2


def test_versions_are_cached_separately(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "multi", "one-value")
    fake_sm.add(PROJECT, "multi", "two-value")
    assert load_secret("multi", version="1").get_secret_value() == "one-value"
    assert load_secret("multi").get_secret_value() == "two-value"
    assert load_secret("multi", version="1").get_secret_value() == "one-value"
    assert fake_sm.calls["AccessSecretVersion"] == 2


def test_failed_leader_shares_its_error_and_is_not_cached(fake_sm, gcp_stack) -> None:
    import grpc
    import pytest

    from oxeo_flows import SecretAccessError

    gcp_stack()
    fake_sm.add(PROJECT, "denied", "denied-value")
    fake_sm.fail(grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(SecretAccessError):
        load_secret("denied")
    assert load_secret("denied").get_secret_value() == "denied-value"


def test_cancelled_async_caller_does_not_break_others(fake_sm, gcp_stack) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "cancel", "cancel-value")
    fake_sm.delay = 0.3

    async def scenario() -> str:
        leader = asyncio.ensure_future(aload_secret("cancel"))
        await asyncio.sleep(0.05)
        follower = asyncio.ensure_future(aload_secret("cancel"))
        await asyncio.sleep(0.01)
        leader.cancel()
        value = await follower
        return value.get_secret_value()

    assert asyncio.run(scenario()) == "cancel-value"
    assert fake_sm.calls["AccessSecretVersion"] == 1
