"""``OXEO_FLOWS_*`` variables, ``load_stack`` / ``resolve_stack`` arguments."""

from __future__ import annotations

import pytest

from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import load_stack, resolve_stack
from tests.bad_input._expect import cases, expect

HEAD = '[tool.oxeo-flows]\ndefault-stack = "p"\n[tool.oxeo-flows.stacks.p]\n'

# (id, environment, field named, fix text)
ENV_CASES = [
    (
        "empty-value",
        {"OXEO_FLOWS_GCP__REGION": ""},
        "OXEO_FLOWS_GCP__REGION",
        "unset OXEO_FLOWS_GCP__REGION",
    ),
    (
        "whitespace-value",
        {"OXEO_FLOWS_GCP__REGION": " \t "},
        "OXEO_FLOWS_GCP__REGION",
        "give it a value",
    ),
    (
        "broken-json-list",
        {"OXEO_FLOWS_SECRETS__SOURCES": "[env,"},
        "OXEO_FLOWS_SECRETS__SOURCES",
        "does not parse",
    ),
    (
        "broken-json-table",
        {"OXEO_FLOWS_VERTEX__LABELS": "{team: x}"},
        "OXEO_FLOWS_VERTEX__LABELS",
        "does not parse",
    ),
    (
        "empty-key-part",
        {"OXEO_FLOWS_GCP____REGION": "x"},
        "OXEO_FLOWS_GCP____REGION",
        "nest with '__'",
    ),
    ("trailing-separator", {"OXEO_FLOWS_GCP__": "x"}, "OXEO_FLOWS_GCP__", "nest with '__'"),
    ("section-typo", {"OXEO_FLOWS_GPC__REGION": "x"}, "gpc", "did you mean 'gcp'?"),
    ("key-typo", {"OXEO_FLOWS_GCP__REGOIN": "x"}, "gcp.regoin", "did you mean 'region'?"),
    (
        "section-and-key-conflict",
        {"OXEO_FLOWS_GCP": "x", "OXEO_FLOWS_GCP__REGION": "y"},
        "OXEO_FLOWS_GCP__REGION",
        "conflicts with another",
    ),
    (
        "int-as-word",
        {"OXEO_FLOWS_SECRETS__RETRIES": "three"},
        "OXEO_FLOWS_SECRETS__RETRIES",
        "valid integer",
    ),
    (
        "inf",
        {"OXEO_FLOWS_SECRETS__CACHE_TTL": "inf"},
        "OXEO_FLOWS_SECRETS__CACHE_TTL",
        "finite number",
    ),
    ("nan", {"OXEO_FLOWS_SECRETS__TIMEOUT": "nan"}, "OXEO_FLOWS_SECRETS__TIMEOUT", "finite number"),
    (
        "negative-ttl",
        {"OXEO_FLOWS_SECRETS__CACHE_TTL": "-5"},
        "secrets.cache-ttl",
        "greater than or equal to 0",
    ),
    (
        "huge-int",
        {"OXEO_FLOWS_STORAGE__MAX_CONCURRENCY": "9" * 40},
        "storage.max-concurrency",
        "less than or equal to 64",
    ),
    (
        "bool-maybe",
        {"OXEO_FLOWS_STORAGE__DELETE": "maybe"},
        "OXEO_FLOWS_STORAGE__DELETE",
        "valid boolean",
    ),
    ("enum-case", {"OXEO_FLOWS_RUNNER": "Vertex"}, "OXEO_FLOWS_RUNNER", "'vertex'"),
    ("enum-typo", {"OXEO_FLOWS_DASK__BACKEND": "ec3"}, "OXEO_FLOWS_DASK__BACKEND", "'ec2'"),
    ("unknown-stack", {"OXEO_FLOWS_STACK": "prd"}, "OXEO_FLOWS_STACK", "defines: local, p"),
    (
        "list-bad-item",
        {"OXEO_FLOWS_SECRETS__SOURCES": "env,vault"},
        "secrets.sources.1",
        "'env', 'prefect', 'gcp' or 'aws'",
    ),
    (
        "json-wrong-shape",
        {"OXEO_FLOWS_SECRETS__SOURCES": '{"a": 1}'},
        "secrets.sources",
        "valid tuple",
    ),
    (
        "bucket-unicode-lookalike",
        {"OXEO_FLOWS_STORAGE__BUCKET": "c\u043ede"},
        "OXEO_FLOWS_STORAGE__BUCKET",
        "lowercase letters, digits",
    ),
    (
        "project-trailing-space-inside",
        {"OXEO_FLOWS_GCP__PROJECT": "my proj"},
        "gcp.project",
        "lowercase letters, digits and hyphens",
    ),
]


@pytest.mark.parametrize(
    ("environ", "field", "fix"), [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES]
)
def test_bad_environment(stack_file, environ: dict[str, str], field: str, fix: str) -> None:
    stack_file(HEAD)
    expect(ConfigError, lambda: load_stack(environ=environ), field, fix)


# (id, call, field named, fix text)
CALL_CASES = [
    ("resolve-int", lambda: resolve_stack(3), "stack must be", "a Stack, a stack name or None"),
    ("resolve-list", lambda: resolve_stack(["p"]), "stack must be", "a stack name"),
    ("resolve-unknown-name", lambda: resolve_stack("prdo"), "Unknown stack 'prdo'", "defines"),
    (
        "overrides-typo",
        lambda: load_stack(overrides={"gcp": {"regoin": "x"}}),
        "gcp.regoin",
        "did you mean 'region'?",
    ),
    (
        "overrides-bad-value",
        lambda: load_stack(overrides={"secrets": {"retries": -1}}),
        "secrets.retries",
        "greater than or equal to 0",
    ),
    (
        "overrides-named-as-argument",
        lambda: load_stack(overrides={"runner": "k8s"}),
        "[from argument]",
        "'process', 'docker' or 'vertex'",
    ),
]


@pytest.mark.parametrize(
    ("call", "field", "fix"), [c[1:] for c in CALL_CASES], ids=[c[0] for c in CALL_CASES]
)
def test_bad_call(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)


@pytest.mark.parametrize(
    ("call", "field", "fix"),
    cases(
        [
            ("load-name-int", lambda: load_stack(3), "stack must be", "a stack name or None"),
            ("load-name-bytes", lambda: load_stack(b"p"), "got bytes", "a stack name"),
            (
                "overrides-list",
                lambda: load_stack(overrides=[("gcp", 1)]),
                "overrides",
                "nested like the TOML",
            ),
            (
                "overrides-string",
                lambda: load_stack(overrides="gcp.region=x"),
                "overrides",
                "{'gcp': {'region': 'europe-west4'}}",
            ),
        ]
    ),
)
def test_bad_load_arguments(call, field: str, fix: str) -> None:
    expect(ConfigError, call, field, fix)
