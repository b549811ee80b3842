"""Stack files: syntax, encodings, unreadable paths, unknown keys, bad values of every section."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oxeo_flows.errors import ConfigError
from oxeo_flows.stack import load_stack
from tests.bad_input._expect import expect

HEAD = '[tool.oxeo-flows]\ndefault-stack = "p"\n[tool.oxeo-flows.stacks.p]\n'
GCP = "[tool.oxeo-flows.stacks.p.gcp]\n"
AWS = "[tool.oxeo-flows.stacks.p.aws]\n"
SECRETS = "[tool.oxeo-flows.stacks.p.secrets]\n"
STORAGE = "[tool.oxeo-flows.stacks.p.storage]\n"
VERTEX = "[tool.oxeo-flows.stacks.p.vertex]\n"
DOCKER = "[tool.oxeo-flows.stacks.p.docker]\n"
POOL = "[tool.oxeo-flows.stacks.p.pools.a]\n"
NET = 'project = "my-proj-1"\nnetwork = "net"\n'

# (id, body after HEAD, field named, fix text)
SECTION_CASES = [
    ("runner-typo", 'runner = "vertx"', "runner", "'process', 'docker' or 'vertex'"),
    ("runner-wrong-type", "runner = 3", "runner", "'process', 'docker' or 'vertex'"),
    ("runner-upper", 'runner = "Vertex"', "runner", "'vertex'"),
    ("work-pool-int", "work-pool = 3", "work-pool", "valid string"),
    ("variables-not-table", "variables = 3", "variables", "valid dictionary"),
    ("unknown-top-key-did-you-mean", 'runer = "process"', "runer", "did you mean 'runner'?"),
    ("gcp-key-typo", GCP + 'regoin = "x"', "gcp.regoin", "did you mean 'region'?"),
    (
        "gcp-network-underscore",
        GCP + 'project = "my-proj-1"\nnetwork = "Bad_Net"',
        "gcp.network",
        "lowercase letters, digits and hyphens",
    ),
    (
        "gcp-host-number-without-host",
        GCP + NET + 'host-project-number = "123456789012"',
        "host-project-number",
        "set both for a Shared VPC",
    ),
    (
        "gcp-subnetwork-without-region",
        GCP + NET + 'subnetwork = "sub"',
        "subnetwork",
        "needs a region",
    ),
    (
        "gcp-ranges-without-network",
        GCP + 'project = "my-proj-1"\nreserved-ip-ranges = ["r1"]',
        "reserved-ip-ranges",
        "set network",
    ),
    (
        "gcp-zone-outside-region",
        GCP + 'region = "europe-west4"\nzone = "us-east1-b"',
        "zone 'us-east1-b'",
        "not in region 'europe-west4'",
    ),
    ("gcp-region-spaces", GCP + 'region = "Europe West"', "gcp.region", "like 'europe-west4'"),
    ("gcp-project-upper", GCP + 'project = "MyProj"', "gcp.project", "lowercase letters"),
    (
        "gcp-project-cyrillic-o",
        GCP + 'project = "my-pr\u043ej-1"',
        "gcp.project",
        "lowercase letters",
    ),
    ("gcp-project-too-long", GCP + f'project = "{"a" * 40}"', "gcp.project", "6-30 characters"),
    (
        "gcp-project-number-letters",
        GCP + NET + 'project-number = "12ab"',
        "project-number",
        "gcloud projects describe",
    ),
    (
        "gcp-service-account-no-domain",
        GCP + 'service-account = "bob"',
        "gcp.service-account",
        "NAME@PROJECT.iam.gserviceaccount.com",
    ),
    (
        "gcp-endpoints-typo",
        GCP[:-1][:-1] + '.endpoints]\nsecretmanager = "x"',
        "gcp.endpoints.secretmanager",
        "did you mean 'secret-manager'?",
    ),
    ("aws-vpc-without-region", AWS + 'vpc = "vpc-0123abcd"', "aws.region", "required when a vpc"),
    ("aws-region-upper", AWS + 'region = "EU-WEST-1"', "aws.region", "like 'eu-west-1'"),
    (
        "aws-subnet-bad-id",
        AWS + 'region = "eu-west-1"\nsubnets = ["subnet-zz"]',
        "aws.subnets.0",
        "8 or 17 hex digits",
    ),
    (
        "aws-sg-bad-id",
        AWS + 'region = "eu-west-1"\nsecurity-groups = ["sg"]',
        "aws.security-groups.0",
        "'sg-' followed by",
    ),
    (
        "aws-subnets-not-list",
        AWS + 'region = "eu-west-1"\nsubnets = 3',
        "aws.subnets",
        "valid tuple",
    ),
    ("aws-key-typo", AWS + 'regin = "eu-west-1"', "aws.regin", "did you mean 'region'?"),
    ("secrets-cache-ttl-inf", SECRETS + "cache-ttl = inf", "secrets.cache-ttl", "finite number"),
    ("secrets-cache-ttl-nan", SECRETS + "cache-ttl = nan", "secrets.cache-ttl", "finite number"),
    (
        "secrets-cache-ttl-negative",
        SECRETS + "cache-ttl = -1",
        "secrets.cache-ttl",
        "greater than or equal to 0",
    ),
    (
        "secrets-retries-huge",
        SECRETS + "retries = 1000000",
        "secrets.retries",
        "less than or equal to 10",
    ),
    ("secrets-timeout-zero", SECRETS + "timeout = 0", "secrets.timeout", "greater than 0"),
    ("secrets-timeout-string", SECRETS + 'timeout = "30s"', "secrets.timeout", "valid number"),
    (
        "secrets-source-typo",
        SECRETS + 'sources = ["env", "gpc"]',
        "secrets.sources.1",
        "'env', 'prefect', 'gcp' or 'aws'",
    ),
    (
        "secrets-source-repeated",
        SECRETS + 'sources = ["env", "env"]',
        "secrets.sources",
        "must not repeat",
    ),
    (
        "secrets-env-prefix-hyphen",
        SECRETS + 'env-prefix = "A-B"',
        "secrets.env-prefix",
        "use A-Z, 0-9 and _",
    ),
    (
        "secrets-gcp-project-upper",
        SECRETS + 'gcp-project = "UP"',
        "secrets.gcp-project",
        "lowercase letters",
    ),
    ("secrets-required-not-list", SECRETS + "required = 3", "secrets.required", "valid tuple"),
    (
        "storage-bucket-underscore",
        STORAGE + 'bucket = "My_Bucket"',
        "storage.bucket",
        "lowercase letters, digits",
    ),
    (
        "storage-bucket-ip",
        STORAGE + 'bucket = "192.168.1.1"',
        "storage.bucket",
        "must not be formatted as an IP address",
    ),
    (
        "storage-folder-dotdot",
        STORAGE + 'bucket = "b-ok"\nfolder = "../x"',
        "storage.folder",
        "must not contain '.' or '..'",
    ),
    (
        "storage-bucket-and-image-dir",
        STORAGE + 'bucket = "b-ok"\nimage-code-dir = "/opt"',
        "image-code-dir",
        "keep one",
    ),
    (
        "storage-image-dir-relative",
        STORAGE + 'image-code-dir = "opt/x"',
        "storage.image-code-dir",
        "absolute directory",
    ),
    (
        "storage-concurrency-zero",
        STORAGE + "max-concurrency = 0",
        "storage.max-concurrency",
        "greater than or equal to 1",
    ),
    (
        "storage-concurrency-huge",
        STORAGE + "max-concurrency = 1000000000",
        "storage.max-concurrency",
        "less than or equal to 64",
    ),
    ("storage-key-typo", STORAGE + 'fodler = "x"', "storage.fodler", "did you mean 'folder'?"),
    (
        "vertex-machine-typo",
        VERTEX + 'machine-type = "n1-standrd-8"',
        "machine-type",
        "did you mean 'n1-standard-8'",
    ),
    (
        "vertex-n1-with-l4",
        VERTEX
        + 'machine-type = "n1-standard-8"\naccelerator-type = "NVIDIA_L4"\naccelerator-count = 1',
        "machine-type",
        "g2-standard-4",
    ),
    (
        "vertex-image-upper",
        VERTEX + 'image = "UPPER/case:1"',
        "vertex.image",
        "lowercase repository",
    ),
    (
        "vertex-disk-type-typo",
        VERTEX + 'boot-disk-type = "pd-sdd"',
        "vertex.boot-disk-type",
        "'pd-ssd'",
    ),
    (
        "vertex-strategy-lowercase",
        VERTEX + 'scheduling-strategy = "spot"',
        "vertex.scheduling-strategy",
        "'SPOT'",
    ),
    (
        "vertex-label-key-upper",
        VERTEX[:-2] + '.labels]\nTeam = "x"',
        "label key 'Team'",
        "starting with a lowercase letter",
    ),
    (
        "vertex-disk-too-small",
        VERTEX + "boot-disk-size-gb = 10",
        "vertex.boot-disk-size-gb",
        "greater than or equal to 100",
    ),
    (
        "vertex-run-time-zero",
        VERTEX + "max-run-time-hours = 0",
        "vertex.max-run-time-hours",
        "greater than or equal to 1",
    ),
    (
        "vertex-key-typo",
        VERTEX + 'machine-typ = "n1-standard-4"',
        "vertex.machine-typ",
        "did you mean 'machine-type'?",
    ),
    (
        "docker-volume-no-colon",
        DOCKER + 'volumes = ["nocolon"]',
        "docker.volumes.0",
        "SOURCE:/container/path",
    ),
    (
        "docker-pull-policy-case",
        DOCKER + 'image-pull-policy = "always"',
        "docker.image-pull-policy",
        "'Always'",
    ),
    (
        "docker-pip-spaces",
        DOCKER + 'extra-pip-packages = ["foo bar baz"]',
        "docker.extra-pip-packages.0",
        "not a valid requirement",
    ),
    ("docker-mem-limit-words", DOCKER + 'mem-limit = "lots"', "docker.mem-limit", "e.g. '4g'"),
    ("pool-type-typo", POOL + 'type = "vertex"', "pools.a.type", "did you mean 'vertex-ai'?"),
    (
        "pool-type-missing",
        POOL + 'description = "x"',
        "pools.a.type",
        "'vertex-ai', 'docker', 'process'",
    ),
    ("pool-type-wrong-type", POOL + "type = 3", "pools.a.type", "use one of"),
    (
        "pool-concurrency-negative",
        POOL + 'type = "process"\nconcurrency-limit = -1',
        "pools.a.concurrency-limit",
        "greater than or equal to 0",
    ),
    (
        "pool-key-typo",
        POOL + 'type = "docker"\nimagee = "x"',
        "pools.a.imagee",
        "did you mean 'image'?",
    ),
    (
        "pool-layered-bad-image",
        POOL + 'type = "docker"\nimage = "Bad Image"',
        "pools.a",
        "lowercase repository",
    ),
    (
        "dask-backend-typo",
        '[tool.oxeo-flows.stacks.p.dask]\nbackend = "gpc"',
        "dask.backend",
        "'local', 'address', 'gcp', 'ec2' or 'vertex'",
    ),
    (
        "dask-vertex-without-vertex-runner",
        '[tool.oxeo-flows.stacks.p.dask]\nbackend = "vertex"',
        "runner",
        "set runner = 'vertex'",
    ),
    ("extends-undefined", 'extends = "nope"', "extends 'nope'", "not defined"),
    ("extends-not-string", "extends = 3", "stacks.p.extends", "must be a stack name"),
]


@pytest.mark.parametrize(
    ("body", "field", "fix"), [c[1:] for c in SECTION_CASES], ids=[c[0] for c in SECTION_CASES]
)
def test_bad_stack_value(stack_file, body: str, field: str, fix: str) -> None:
    path = stack_file(HEAD + body + "\n")
    message = expect(ConfigError, load_stack, field, fix)
    assert str(path) in message  # the file is named


# (id, whole file, field named, fix text)
FILE_CASES = [
    ("toml-syntax", "[tool.oxeo-flows\n", "not valid TOML", "Fix the syntax"),
    (
        "toml-duplicate-key",
        '[tool.oxeo-flows]\ndefault-stack = "a"\ndefault-stack = "b"\n',
        "not valid TOML",
        "Fix the syntax",
    ),
    (
        "toml-unclosed-string",
        '[tool.oxeo-flows]\ndefault-stack = "a\n',
        "not valid TOML",
        "https://toml.io",
    ),
    (
        "top-level-typo",
        '[tool.oxeo-flows]\ndefault-stak = "p"\n',
        "'default-stak'",
        "did you mean 'default-stack'?",
    ),
    (
        "top-level-unknown",
        '[tool.oxeo-flows]\nprod = "x"\n',
        "'prod'",
        "stack settings go under stacks.<name>",
    ),
    (
        "underscore-table",
        '[tool.oxeo_flows]\ndefault-stack = "p"\n',
        "[tool.oxeo-flows]",
        "with a hyphen",
    ),
    (
        "stacks-not-table",
        "[tool.oxeo-flows]\nstacks = 3\n",
        "'stacks'",
        "[tool.oxeo-flows.stacks.prod]",
    ),
    ("stack-not-table", '[tool.oxeo-flows.stacks]\nprod = "x"\n', "'stacks'", "table of tables"),
    (
        "default-stack-int",
        "[tool.oxeo-flows]\ndefault-stack = 3\n",
        "default-stack",
        "must be a string",
    ),
    (
        "default-stack-typo",
        '[tool.oxeo-flows]\ndefault-stack = "prd"\n[tool.oxeo-flows.stacks.prod]\n',
        "Unknown stack 'prd'",
        "Did you mean 'prod'?",
    ),
    (
        "extends-cycle",
        '[tool.oxeo-flows]\ndefault-stack = "a"\n[tool.oxeo-flows.stacks.a]\n'
        'extends = "b"\n[tool.oxeo-flows.stacks.b]\nextends = "a"\n',
        "a -> b -> a",
        "cycle",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "fix"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_bad_stack_file(stack_file, body: str, field: str, fix: str) -> None:
    stack_file(body)
    expect(ConfigError, load_stack, field, fix)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("pyproject.toml", b'[tool.oxeo-flows]\ndefault-stack = "\xff"\n'),
        ("oxeo-flows.toml", b'[stacks.p]\nrunner = "\xfe\xfe"\n'),
        ("oxeo-flows.toml", "[stacks.p]\n# caf\u00e9\n".encode("utf-16")),
    ],
    ids=["pyproject-latin1-byte", "dedicated-file-bad-byte", "utf16-file"],
)
def test_non_utf8_file(tmp_path: Path, name: str, raw: bytes) -> None:
    (tmp_path / name).write_bytes(raw)
    expect(ConfigError, load_stack, name, "re-save it as UTF-8")


@pytest.mark.parametrize(
    "target", ["missing", "directory", "empty-name"], ids=["missing", "directory", "empty"]
)
def test_config_env_points_nowhere(tmp_path: Path, monkeypatch, target: str) -> None:
    path = {"missing": tmp_path / "nope.toml", "directory": tmp_path, "empty-name": tmp_path / " "}
    monkeypatch.setenv("OXEO_FLOWS_CONFIG", str(path[target]))
    expect(ConfigError, load_stack, "OXEO_FLOWS_CONFIG", "not a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "oxeo-flows.toml"
    path.write_text("[stacks.p]\n")
    path.chmod(0)
    expect(ConfigError, load_stack, "cannot read", "oxeo-flows.toml")


def test_config_file_is_a_directory_named_like_one(tmp_path: Path, monkeypatch) -> None:
    """A directory called oxeo-flows.toml is skipped; OXEO_FLOWS_CONFIG naming it is refused."""
    (tmp_path / "oxeo-flows.toml").mkdir()
    monkeypatch.setenv("OXEO_FLOWS_CONFIG", str(tmp_path / "oxeo-flows.toml"))
    expect(ConfigError, load_stack, "oxeo-flows.toml", "which is not a file")
