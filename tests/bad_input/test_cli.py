"""Every ``oxeo-flows`` command with bad input: exit code != 0, no traceback, one paragraph
naming the problem and the fix. Each runs as a real process (the installed entry point)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli._run import run_cli

HEAD = '[tool.oxeo-flows]\ndefault-stack = "p"\n[tool.oxeo-flows.stacks.p]\n'
AWS_SECRETS = (
    HEAD + '[tool.oxeo-flows.stacks.p.secrets]\nsources = ["aws"]\nrequired = ["db-pass"]\n'
)
BROKEN = "[tool.oxeo-flows\n"
OPEN_VERTEX = (
    HEAD + 'runner = "vertex"\n[tool.oxeo-flows.stacks.p.vertex]\nprivate-network = false\n'
    'image = "europe-docker.pkg.dev/my-proj-1/flows/etl:1"\nregion = "europe-west4"\n'
    'service-account = "flows-runner@my-proj-1.iam.gserviceaccount.com"\n'
)
VGCP = HEAD + 'runner = "vertex"\n[tool.oxeo-flows.stacks.p.gcp]\nproject = "my-proj-1"\n'
FLOW = "from prefect import flow\n\n@flow\ndef f(date: str = 'x'):\n    pass\n"

# (id, argv, stack file body or None, extra env, [texts the output must contain])
CASES = [
    ("stack-show-broken-toml", ["stack", "show"], BROKEN, {}, ["not valid TOML", "Fix the syntax"]),
    (
        "stack-show-json-broken-toml",
        ["stack", "show", "--json"],
        BROKEN,
        {},
        ["not valid TOML", "https://toml.io"],
    ),
    (
        "stack-show-unknown-stack",
        ["stack", "show", "--stack", "prdo"],
        HEAD,
        {},
        ["Unknown stack 'prdo'", "defines: local, p"],
    ),
    (
        "stack-show-empty-env",
        ["stack", "show"],
        HEAD,
        {"OXEO_FLOWS_GCP__REGION": ""},
        ["OXEO_FLOWS_GCP__REGION", "unset OXEO_FLOWS_GCP__REGION"],
    ),
    (
        "stack-show-config-missing",
        ["stack", "show"],
        None,
        {"OXEO_FLOWS_CONFIG": "/nonexistent/oxeo-flows.toml"},
        ["OXEO_FLOWS_CONFIG", "not a file"],
    ),
    (
        "stack-show-key-typo",
        ["stack", "show"],
        HEAD + 'runer = "process"\n',
        {},
        ["runer", "did you mean 'runner'?"],
    ),
    (
        "secrets-get-bad-scheme",
        ["secrets", "get", "ftp://x"],
        None,
        {},
        ["unknown secret source 'ftp'", "env://VAR"],
    ),
    (
        "secrets-get-bad-source",
        ["secrets", "get", "--source", "bogus", "x"],
        None,
        {},
        ["['bogus']", "valid sources are"],
    ),
    (
        "secrets-get-empty-version",
        ["secrets", "get", "x", "--version", ""],
        None,
        {},
        ["secret version", "such as 'latest'"],
    ),
    (
        "secrets-get-aws-no-region",
        ["secrets", "get", "db-pass"],
        AWS_SECRETS,
        {},
        ["aws.region", "OXEO_FLOWS_AWS__REGION=eu-west-1"],
    ),
    (
        "secrets-check-aws-no-region",
        ["secrets", "check"],
        AWS_SECRETS,
        {},
        ["aws.region", "OXEO_FLOWS_AWS__REGION=eu-west-1", "did not resolve"],
    ),
    (
        "secrets-check-bad-stack",
        ["secrets", "check"],
        HEAD + "[tool.oxeo-flows.stacks.p.secrets]\ncache-ttl = inf\n",
        {},
        ["secrets.cache-ttl", "finite number"],
    ),
    (
        "vertex-job-variables-unknown-pool",
        ["vertex", "job-variables", "--pool", "nope"],
        OPEN_VERTEX,
        {},
        ["pool 'nope'", "defined: (none)"],
    ),
    (
        "vertex-job-variables-bad-gpu",
        ["vertex", "job-variables"],
        OPEN_VERTEX + 'machine-type = "n1-standard-8"\naccelerator-type = "NVIDIA_L4"\n'
        "accelerator-count = 1\n",
        {},
        ["NVIDIA_L4", "g2-standard-4"],
    ),
    (
        "vertex-ensure-pool-private-default",
        ["vertex", "ensure-pool", "--dry-run"],
        HEAD + 'runner = "vertex"\n',
        {},
        ["gcp.network is not set", "vertex.private-network = false"],
    ),
    (
        "vertex-ensure-pool-bad-name",
        ["vertex", "ensure-pool", "a/b", "--dry-run"],
        OPEN_VERTEX,
        {},
        ["work pool name 'a/b'", "without '/'"],
    ),
    (
        "docker-ensure-pool-empty-name",
        ["docker", "ensure-pool", "", "--dry-run"],
        None,
        {},
        ["work pool name ''", "give a non-empty name"],
    ),
    (
        "docker-ensure-pool-bad-volume",
        ["docker", "ensure-pool", "--dry-run"],
        HEAD + '[tool.oxeo-flows.stacks.p.docker]\nvolumes = ["x"]\n',
        {},
        ["docker.volumes.0", "SOURCE:/container/path"],
    ),
    (
        "deploy-bad-param",
        ["deploy", "f.py:f", "-n", "x", "--param", "novalue", "--dry-run"],
        None,
        {},
        ["--param 'novalue'", "KEY=VALUE"],
    ),
    (
        "deploy-bad-cron",
        ["deploy", "f.py:f", "-n", "x", "--cron", "bogus", "--dry-run"],
        None,
        {},
        ["'bogus'", "'0 6 * * *'"],
    ),
    (
        "deploy-unknown-param",
        ["deploy", "f.py:f", "-n", "x", "--param", "dat=1", "--dry-run"],
        None,
        {},
        ["'dat'", "did you mean 'date'?"],
    ),
    (
        "deploy-bad-entrypoint",
        ["deploy", "nofile", "-n", "x", "--dry-run"],
        None,
        {},
        ["entrypoint 'nofile'", "path/to/file.py:flow_function"],
    ),
    (
        "deploy-bad-name",
        ["deploy", "f.py:f", "-n", "a/b", "--dry-run"],
        None,
        {},
        ["deployment name 'a/b'", "contain no '/'"],
    ),
    (
        "deploy-src-missing",
        ["deploy", "f.py:f", "-n", "x", "--src", "nope", "--dry-run"],
        None,
        {},
        ["does not exist", "give src= the directory"],
    ),
    (
        "sync-src-missing",
        ["sync", "/nonexistent", "--bucket", "b-ok"],
        None,
        {},
        ["/nonexistent", "not a directory"],
    ),
    (
        "sync-bad-bucket",
        ["sync", ".", "--bucket", "Bad_Bucket"],
        None,
        {},
        ["Bad_Bucket", "lowercase letters"],
    ),
    (
        "sync-bad-folder",
        ["sync", ".", "--bucket", "b-ok", "--folder", "../x"],
        None,
        {},
        ["folder '../x'", "must not contain '.' or '..'"],
    ),
    ("sync-no-bucket", ["sync", "."], None, {}, ["storage.bucket", "OXEO_FLOWS_STORAGE__BUCKET"]),
    ("pull-no-bucket", ["pull", "."], None, {}, ["bucket= or block=", "storage.bucket"]),
    (
        "clusters-list-bad-age",
        ["clusters", "list", "--older-than", "banana"],
        None,
        {},
        ["'banana' is not a duration", "e.g. 30m, 2h, 1d"],
    ),
    (
        "clusters-list-bad-cloud",
        ["clusters", "list", "--cloud", "azure"],
        None,
        {},
        ["unknown cloud 'azure'", "use gcp or ec2"],
    ),
    (
        "clusters-cleanup-bad-cloud",
        ["clusters", "cleanup", "--cloud", "azure", "--dry-run"],
        None,
        {},
        ["unknown cloud 'azure'", "use gcp or ec2"],
    ),
    ("apply-broken-toml", ["apply", "--dry-run"], BROKEN, {}, ["not valid TOML", "Fix the syntax"]),
    (
        "apply-json-bad-value",
        ["apply", "--dry-run", "--json"],
        HEAD + 'runner = "vertx"\n',
        {},
        ['"type": "ConfigError"', "'process', 'docker' or"],
    ),
    (
        "apply-bad-pool-type",
        ["apply", "--check"],
        HEAD + '[tool.oxeo-flows.stacks.p.pools.a]\ntype = "vertex"\n',
        {},
        ["pools.a.type", "did you mean 'vertex-ai'?"],
    ),
    (
        "apply-bad-network-name",
        ["apply", "--dry-run"],
        VGCP + 'network = "Bad_Net"\n',
        {},
        ["gcp.network", "lowercase letters, digits and hyphens"],
    ),
    (
        "apply-host-number-without-host",
        ["apply", "--dry-run"],
        VGCP + 'network = "net"\nhost-project-number = "123456789012"\n',
        {},
        ["host-project-number", "set both for a Shared VPC"],
    ),
    (
        "apply-subnetwork-without-region",
        ["apply", "--dry-run"],
        VGCP + 'network = "net"\nsubnetwork = "sub"\n',
        {},
        ["subnetwork 'sub'", "needs a region"],
    ),
    (
        "vertex-job-variables-bad-network",
        ["vertex", "job-variables"],
        VGCP + 'network = "Bad_Net"\n',
        {},
        ["gcp.network", "lowercase letters"],
    ),
    ("stack-show-non-utf8", ["stack", "show"], "\udcff", {}, ["not UTF-8", "re-save it as UTF-8"]),
    ("doctor-broken-toml", ["doctor"], BROKEN, {}, ["not valid TOML", "fix:"]),
    ("doctor-json-non-utf8", ["doctor", "--json"], "\udcff", {}, ["UTF-8", '"fix"']),
    ("demo-bad-tiles", ["demo", "--tiles", "-1"], None, {}, ["--tiles", "greater than or equal"]),
    ("unknown-command", ["stak", "show"], None, {}, ["No such command 'stak'", "--help"]),
]


def _write(cwd: Path, body: str | None) -> None:
    (cwd / "f.py").write_text(FLOW)
    if body == "\udcff":
        (cwd / "pyproject.toml").write_bytes(b'[tool.oxeo-flows]\ndefault-stack = "\xff"\n')
    elif body is not None:
        (cwd / "pyproject.toml").write_text(body)


@pytest.mark.parametrize(
    ("argv", "body", "env", "texts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cli_bad_input(
    tmp_path: Path, argv: list[str], body: str | None, env: dict[str, str], texts: list[str]
) -> None:
    _write(tmp_path, body)
    base = {
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # nothing listens: no command gets that far
        "AWS_DEFAULT_REGION": "",
        "AWS_REGION": "",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "COLUMNS": "4000",
    }
    result = run_cli(*argv, cwd=tmp_path, env={**base, **env})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert "errors.pydantic.dev" not in output, output
    for text in texts:
        assert text in output, f"{text!r} not in:\n{output}"
    # One paragraph: the error is not spread over blank-line separated blocks.
    error = result.stderr.strip()
    assert "\n\n" not in error, error
    assert len(error.splitlines()) <= 20, error


def test_unexpected_error_is_one_masked_paragraph(monkeypatch, capsys) -> None:
    """The last line of defence: a bug's exception is shown in one paragraph, secrets masked."""
    import typer

    from oxeo_flows.cli._common import friendly_errors
    from oxeo_flows.secrets import load_secret

    monkeypatch.setenv("CLI_NET_CANARY", "clinetcanary0123456789abcdef")
    value = load_secret("cli-net-canary", sources=["env"]).get_secret_value()
    with pytest.raises(typer.Exit) as info, friendly_errors():
        raise KeyError(f"lookup\nof {value}")
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert "unexpected KeyError" in err
    assert "rerun with OXEO_FLOWS_DEBUG=1" in err
    assert value not in err
    assert len(err.strip().splitlines()) == 1


def test_debug_variable_shows_the_traceback(monkeypatch) -> None:
    from oxeo_flows.cli._common import friendly_errors
    from oxeo_flows.stack import load_stack

    monkeypatch.setenv("OXEO_FLOWS_DEBUG", "1")
    assert load_stack().name == "local"  # not read as a stack key
    with pytest.raises(ZeroDivisionError), friendly_errors():
        _ = 1 / 0
