"""`DockerJob`, `docker_job` and `docker_registry_credentials`."""

from __future__ import annotations

from typing import Any

import pytest

from oxeo_flows import DockerJob, docker_job, docker_registry_credentials
from oxeo_flows.errors import ConfigError, OxeoFlowsError
from tests.bad_input._expect import expect

# (id, fields, field named, fix text)
JOB_CASES = [
    ("image-empty", {"image": ""}, "image", "e.g. 'prefecthq/prefect:3-python3.11'"),
    ("image-upper", {"image": "Foo/Bar"}, "image", "with a lowercase repository"),
    ("image-double-colon", {"image": "foo::1"}, "image", "REPOSITORY[:TAG]"),
    ("image-bad-digest", {"image": "foo@sha256:zz"}, "image", "@sha256:DIGEST"),
    ("image-int", {"image": 3}, "image", "valid string"),
    ("env-value-int", {"env": {"A": 1}}, "env.A", "valid string"),
    ("env-name-space", {"env": {"A B": "x"}}, "'A B'", "letters, digits, '_'"),
    ("volume-no-target", {"volumes": ("/a",)}, "volumes.0", "SOURCE:/container/path[:MODE]"),
    ("volume-relative-target", {"volumes": ("a:b",)}, "volumes.0", "must be absolute"),
    ("volume-bad-mode", {"volumes": ("/a:/b:rx",)}, "volumes.0", "use ro or rw"),
    ("volumes-string", {"volumes": "/a:/b"}, "volumes", "valid tuple"),
    ("mem-words", {"mem_limit": "lots"}, "mem-limit", "e.g. '4g'"),
    ("mem-negative", {"mem_limit": "-1g"}, "mem-limit", "use a number with b, k, m or g"),
    ("pull-policy-case", {"image_pull_policy": "always"}, "image-pull-policy", "'Always'"),
    (
        "pip-incomplete",
        {"extra_pip_packages": ("foo==",)},
        "extra-pip-packages.0",
        "not a valid requirement",
    ),
    (
        "pip-option-smuggled",
        {"extra_pip_packages": ("--index-url http://evil",)},
        "extra-pip-packages.0",
        "not a valid requirement",
    ),
    ("networks-string", {"networks": "bridge"}, "networks", "valid tuple"),
    (
        "network-mode-and-networks",
        {"network_mode": "host", "networks": ("a",)},
        "networks and network_mode",
        "keep one",
    ),
    ("unknown-key", {"imagee": "x"}, "imagee", "did you mean 'image'?"),
    ("privileged-words", {"privileged": "no thanks"}, "privileged", "valid boolean"),
    (
        "registry-credentials-empty",
        {"registry_credentials": ""},
        "registry-credentials",
        "name of a saved DockerRegistryCredentials block",
    ),
    (
        "registry-credentials-upper",
        {"registry_credentials": "My Creds"},
        "registry-credentials",
        "lowercase, digits, '-'",
    ),
]


@pytest.mark.parametrize(
    ("fields", "field", "fix"), [c[1:] for c in JOB_CASES], ids=[c[0] for c in JOB_CASES]
)
def test_bad_docker_job(fields: dict[str, Any], field: str, fix: str) -> None:
    expect(ConfigError, lambda: DockerJob(**fields), field, fix)


HEAD = '[tool.oxeo-flows]\ndefault-stack = "d"\n[tool.oxeo-flows.stacks.d]\nrunner = "docker"\n'

# (id, stack body, call, field named, fix text)
FACTORY_CASES = [
    ("override-typo", "", lambda: docker_job(imagee="x"), "imagee", "did you mean 'image'?"),
    ("unknown-pool", "", lambda: docker_job(pool="nope"), "pool 'nope'", "defined: (none)"),
    (
        "vertex-pool-as-docker",
        '[tool.oxeo-flows.stacks.d.pools.v]\ntype = "vertex-ai"\n',
        lambda: docker_job(pool="v"),
        "pools.v",
        "not 'docker'",
    ),
    (
        "stack-bad-volume",
        '[tool.oxeo-flows.stacks.d.docker]\nvolumes = ["x"]\n',
        docker_job,
        "docker.volumes.0",
        "SOURCE:/container/path",
    ),
    (
        "registry-nothing-set",
        "",
        docker_registry_credentials,
        "registry_url and username",
        "docker.registry-url / docker.registry-username",
    ),
    (
        "registry-no-user",
        "",
        lambda: docker_registry_credentials("ghcr.io"),
        "username",
        "docker.registry-username",
    ),
    (
        "registry-url-spaces",
        "",
        lambda: docker_registry_credentials("not a url", "bob", password_secret="x"),
        "registry_url 'not a url'",
        "e.g. 'ghcr.io'",
    ),
    (
        "registry-url-scheme-ftp",
        "",
        lambda: docker_registry_credentials("ftp://ghcr.io", "bob", password_secret="x"),
        "registry_url",
        "HOST[:PORT]",
    ),
    (
        "registry-password-empty",
        "",
        lambda: docker_registry_credentials("ghcr.io", "bob", password_secret=""),
        "password_secret is empty",
        "docker.registry-password-secret",
    ),
    (
        "registry-password-whitespace",
        "",
        lambda: docker_registry_credentials("ghcr.io", "bob", password_secret="  "),
        "password_secret",
        "leave it out",
    ),
    (
        "registry-password-bad-scheme",
        "",
        lambda: docker_registry_credentials("ghcr.io", "bob", password_secret="ftp://x"),
        "'ftp'",
        "env://VAR",
    ),
]


@pytest.mark.parametrize(
    ("body", "call", "field", "fix"),
    [c[1:] for c in FACTORY_CASES],
    ids=[c[0] for c in FACTORY_CASES],
)
def test_bad_docker_factory(stack_file, body: str, call, field: str, fix: str) -> None:
    stack_file(HEAD + body)
    expect(ConfigError, call, field, fix)


def test_registry_password_not_found_names_source(stack_file) -> None:
    stack_file(HEAD + '[tool.oxeo-flows.stacks.d.secrets]\nsources = ["env"]\n')
    message = expect(
        OxeoFlowsError,
        lambda: docker_registry_credentials("ghcr.io", "bob", password_secret="reg-pass-x"),
        "REG_PASS_X",
        "Create it in one of these sources",
    )
    assert "env" in message


def test_factory_error_has_one_header(stack_file) -> None:
    stack_file(HEAD)
    message = expect(ConfigError, lambda: docker_job(imagee="x"), "imagee", "did you mean")
    assert message.count("Invalid configuration") == 1
    assert message.startswith("Invalid configuration in docker_job() (stack 'd'")
