"""`ensure_vertex_pool`, `ensure_docker_pool`, `ensure_pool` and `ensure_block` arguments."""

from __future__ import annotations

import pytest

from oxeo_flows import (
    DockerJob,
    ensure_block,
    ensure_docker_pool,
    ensure_pool,
    ensure_vertex_pool,
)
from oxeo_flows.errors import ConfigError
from tests.bad_input._expect import cases, expect

NAME_FIX = "without '/', '%', '&', '<' or '>'"


@pytest.fixture(autouse=True)
def _no_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case fails before the Prefect API is asked (nothing listens on :9)."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")


def _secret() -> object:
    from prefect.blocks.system import Secret

    return Secret(value="bad-input-not-a-real-value")


POOL_CASES = [
    (
        "docker-name-empty",
        lambda: ensure_docker_pool("", dry_run=True),
        "work pool name ''",
        NAME_FIX,
    ),
    (
        "docker-name-whitespace",
        lambda: ensure_docker_pool("  ", dry_run=True),
        "work pool name",
        "give a non-empty name",
    ),
    ("docker-name-slash", lambda: ensure_docker_pool("a/b", dry_run=True), "'a/b'", NAME_FIX),
    (
        "docker-name-int",
        lambda: ensure_docker_pool(3, dry_run=True),
        "work pool name 3",
        "leave it out to use the stack's work pool",
    ),
    (
        "docker-job-dict",
        lambda: ensure_docker_pool("p", job={"image": "x"}, dry_run=True),
        "job for a 'docker' pool",
        "oxeo_flows.docker_job(...)",
    ),
    (
        "docker-concurrency-negative",
        lambda: ensure_docker_pool("bad-input-p", concurrency_limit=-1, dry_run=True),
        "concurrency_limit -1",
        "a whole number >= 0",
    ),
    (
        "docker-concurrency-float",
        lambda: ensure_docker_pool("bad-input-p", concurrency_limit=1.5, dry_run=True),
        "concurrency_limit 1.5",
        "or None for no limit",
    ),
    (
        "vertex-name-empty",
        lambda: ensure_vertex_pool("", dry_run=True),
        "work pool name ''",
        NAME_FIX,
    ),
    ("vertex-name-ampersand", lambda: ensure_vertex_pool("a&b", dry_run=True), "'a&b'", NAME_FIX),
    (
        "vertex-job-docker",
        lambda: ensure_vertex_pool("p", DockerJob(), dry_run=True),
        "job for a 'vertex-ai' pool",
        "oxeo_flows.vertex_job(...)",
    ),
    (
        "vertex-stack-unknown",
        lambda: ensure_vertex_pool("p", stack="prdo", dry_run=True),
        "Unknown stack 'prdo'",
        "defines: local",
    ),
    (
        "vertex-private-default",
        lambda: ensure_vertex_pool("bad-input-v", dry_run=True),
        "gcp.network is not set",
        "vertex.private-network = false",
    ),
    (
        "type-unknown",
        lambda: ensure_pool("bad-input-k", type="kubernetez", defaults={}, dry_run=True),
        "'kubernetez'",
        "Known types:",
    ),
    (
        "defaults-typo",
        lambda: ensure_pool("bad-input-k", type="docker", defaults={"imagee": "x"}, dry_run=True),
        "'imagee'",
        "did you mean 'image'?",
    ),
    (
        "concurrency-string",
        lambda: ensure_pool(
            "bad-input-k", type="docker", defaults={}, concurrency_limit="x", dry_run=True
        ),
        "concurrency_limit 'x'",
        "a whole number >= 0",
    ),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(POOL_CASES))
def test_bad_pool(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)


BLOCK_CASES = [
    (
        "name-empty",
        lambda: ensure_block(_secret(), "", dry_run=True),
        "block name ''",
        "lowercase letters, digits and '-'",
    ),
    (
        "name-upper-space",
        lambda: ensure_block(_secret(), "Bad Name", dry_run=True),
        "block name 'Bad Name'",
        "e.g. 'oxeo-code'",
    ),
    (
        "name-unicode",
        lambda: ensure_block(_secret(), "c\u043ede", dry_run=True),
        "block name",
        "lowercase letters",
    ),
    (
        "not-a-block",
        lambda: ensure_block({"a": 1}, "ok-name", dry_run=True),
        "got dict",
        "a Prefect block instance",
    ),
    (
        "block-class-not-instance",
        lambda: ensure_block(DockerJob, "ok-name", dry_run=True),
        "ensure_block",
        "e.g. s3_bucket()",
    ),
]


@pytest.mark.parametrize(("call", "field", "fix"), cases(BLOCK_CASES))
def test_bad_block(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)
