"""Stack resolution: precedence, file lookup, origins, and a battery of bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oxeo_flows import ConfigError, load_stack
from oxeo_flows.stack import find_config_file

PROD = """
[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.base.gcp]
project = "oxeo-main"
project-number = "123456789012"
region = "europe-west4"

[tool.oxeo-flows.stacks.prod]
extends = "base"
runner = "vertex"
dask.backend = "gcp"
secrets.sources = ["gcp", "prefect", "env"]

[tool.oxeo-flows.stacks.prod.gcp]
network = "dask"
subnetwork = "dask-europe-west4"
reserved-ip-ranges = ["vertex-peering"]
service-account = "prefect@oxeo-main.iam.gserviceaccount.com"

[tool.oxeo-flows.stacks.prod.pools.gpu]
type = "vertex-ai"
machine-type = "n1-highmem-8"
"""


def test_local_stack_needs_no_file() -> None:
    stack = load_stack()
    assert stack.name == "local"
    assert stack.file is None
    assert stack.runner == "process"
    assert stack.dask.backend == "local"
    assert stack.secrets.sources == ("env", "prefect")
    assert stack.gcp_network() is None
    assert stack.origin("dask", "backend") == "default"


def test_file_default_stack_extends_and_origins(stack_file: Any) -> None:
    path = stack_file(PROD)
    stack = load_stack()
    assert stack.name == "prod"
    assert stack.file == path.resolve()
    assert stack.gcp.project == "oxeo-main"  # inherited from "base"
    assert "[stacks.base]" in stack.origin("gcp", "project")
    assert "[stacks.prod]" in stack.origin("gcp", "network")
    assert stack.origin("vertex", "image") == "default"
    net = stack.gcp_network()
    assert net is not None
    assert net.vertex_network == "projects/123456789012/global/networks/dask"
    assert (
        net.subnetwork_path
        == "projects/oxeo-main/regions/europe-west4/subnetworks/dask-europe-west4"
    )
    assert stack.pools["gpu"].type == "vertex-ai"
    assert stack.default_work_pool == "prod-vertex"


def test_precedence_argument_over_env_over_file(
    stack_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file(PROD)
    monkeypatch.setenv("OXEO_FLOWS_GCP__REGION", "europe-west1")
    monkeypatch.setenv("OXEO_FLOWS_VERTEX__MACHINE_TYPE", "n1-standard-8")
    stack = load_stack()
    assert stack.gcp.region == "europe-west1"
    assert stack.origin("gcp", "region") == "env OXEO_FLOWS_GCP__REGION"
    stack = load_stack(overrides={"gcp": {"region": "us-central1"}})
    assert stack.gcp.region == "us-central1"
    assert stack.origin("gcp", "region") == "argument"
    assert stack.vertex.machine_type == "n1-standard-8"


def test_active_stack_precedence(stack_file: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stack_file(PROD)
    assert load_stack().name == "prod"  # default-stack
    monkeypatch.setenv("OXEO_FLOWS_STACK", "base")
    assert load_stack().name == "base"  # env beats the file
    assert load_stack("local").name == "local"  # argument beats env


def test_env_lists_json_and_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEO_FLOWS_SECRETS__SOURCES", "gcp, env")
    monkeypatch.setenv("OXEO_FLOWS_GCP__RESERVED_IP_RANGES", '["a-range", "b-range"]')
    monkeypatch.setenv("OXEO_FLOWS_GCP__NETWORK", "dask")
    monkeypatch.setenv("OXEO_FLOWS_DASK__ADAPT", "[1, 8]")
    monkeypatch.setenv("OXEO_FLOWS_VERTEX__LABELS__TEAM", "eo")
    stack = load_stack()
    assert stack.secrets.sources == ("gcp", "env")
    assert stack.gcp.reserved_ip_ranges == ("a-range", "b-range")
    assert stack.dask.adapt == (1, 8)
    assert stack.vertex.labels == {"team": "eo"}


def test_dedicated_file_wins_and_search_walks_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.oxeo-flows]\ndefault-stack = "a"\n[tool.oxeo-flows.stacks.a]\n'
    )
    (tmp_path / "oxeo-flows.toml").write_text(
        'default-stack = "b"\n[stacks.b]\nrunner = "docker"\n'
    )
    sub = tmp_path / "flows" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert find_config_file() == (tmp_path / "oxeo-flows.toml").resolve()
    stack = load_stack()
    assert (stack.name, stack.runner) == ("b", "docker")
    assert load_stack(project_dir=tmp_path).name == "b"


def test_pyproject_without_table_stops_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "oxeo-flows.toml").write_text('default-stack = "outer"\n[stacks.outer]\n')
    inner = tmp_path / "repo"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(inner)
    assert load_stack().name == "local"  # the repo's own pyproject is the boundary


def test_oxeo_flows_config_env_points_at_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('default-stack = "x"\n[stacks.x]\nrunner = "docker"\n')
    monkeypatch.setenv("OXEO_FLOWS_CONFIG", str(cfg))
    assert load_stack().runner == "docker"


BAD: list[tuple[str, str, list[str]]] = [
    # (id, pyproject body for stack "s" unless it starts with "#raw", expected message fragments)
    (
        "typo-key",
        "[tool.oxeo-flows.stacks.s.gcp]\nprojet = 'oxeo-main'",
        ["gcp.projet", "did you mean 'project'"],
    ),
    (
        "typo-section",
        "[tool.oxeo-flows.stacks.s.vertx]\nimage = 'x'",
        ["vertx", "did you mean 'vertex'"],
    ),
    (
        "wrong-type-int",
        "[tool.oxeo-flows.stacks.s.vertex]\nboot-disk-size-gb = 'big'",
        ["vertex.boot-disk-size-gb", "integer"],
    ),
    (
        "wrong-type-list",
        "[tool.oxeo-flows.stacks.s.gcp]\nreserved-ip-ranges = 5",
        ["gcp.reserved-ip-ranges"],
    ),
    (
        "bad-runner",
        "[tool.oxeo-flows.stacks.s]\nrunner = 'k8s'",
        ["runner", "'process', 'docker' or 'vertex'"],
    ),
    ("bad-backend", "[tool.oxeo-flows.stacks.s.dask]\nbackend = 'ray'", ["dask.backend"]),
    (
        "project-id-as-number",
        "[tool.oxeo-flows.stacks.s.gcp]\nproject-number = 'oxeo-main'",
        ["gcp.project-number", "looks like a project id", "gcloud projects describe"],
    ),
    (
        "number-not-digits",
        "[tool.oxeo-flows.stacks.s.gcp]\nproject-number = '12ab'",
        ["gcp.project-number", "not a GCP project number"],
    ),
    (
        "bad-project-id",
        "[tool.oxeo-flows.stacks.s.gcp]\nproject = 'Oxeo_Main'",
        ["gcp.project", "not a valid GCP project id"],
    ),
    (
        "zone-as-region",
        "[tool.oxeo-flows.stacks.s.gcp]\nregion = 'europe-west4-a'",
        ["gcp.region", "is a zone, not a region"],
    ),
    (
        "bad-region",
        "[tool.oxeo-flows.stacks.s.gcp]\nregion = 'europe'",
        ["gcp.region", "not a GCP region"],
    ),
    (
        "zone-outside-region",
        "[tool.oxeo-flows.stacks.s.gcp]\nregion = 'europe-west4'\nzone = 'us-central1-a'",
        ["not in region"],
    ),
    (
        "bad-subnetwork",
        "[tool.oxeo-flows.stacks.s.gcp]\nsubnetwork = 'Dask_Subnet'",
        ["gcp.subnetwork", "not a valid subnetwork name"],
    ),
    (
        "bad-range-name",
        "[tool.oxeo-flows.stacks.s.gcp]\nreserved-ip-ranges = ['10.0.0.0/16']",
        ["reserved IP range"],
    ),
    (
        "bad-service-account",
        "[tool.oxeo-flows.stacks.s.gcp]\nservice-account = 'prefect'",
        ["gcp.service-account", "service account email"],
    ),
    ("aws-bad-region", "[tool.oxeo-flows.stacks.s.aws]\nregion = 'ireland'", ["not an AWS region"]),
    (
        "aws-bad-subnet",
        "[tool.oxeo-flows.stacks.s.aws]\nregion = 'eu-west-1'\nsubnets = ['subnet-xyz']",
        ["not a subnet id"],
    ),
    (
        "aws-groups-without-region",
        "[tool.oxeo-flows.stacks.s.aws]\nsecurity-groups = ['sg-0123abcd']",
        ["aws.region is required"],
    ),
    (
        "bad-secret-source",
        "[tool.oxeo-flows.stacks.s.secrets]\nsources = ['vault']",
        ["secrets.sources"],
    ),
    (
        "repeated-secret-source",
        "[tool.oxeo-flows.stacks.s.secrets]\nsources = ['env', 'env']",
        ["must not repeat"],
    ),
    ("negative-ttl", "[tool.oxeo-flows.stacks.s.secrets]\ncache-ttl = -1", ["secrets.cache-ttl"]),
    ("pool-without-type", "[tool.oxeo-flows.stacks.s.pools.p]\nimage = 'x'", ["pools.p"]),
    ("pool-unknown-type", "[tool.oxeo-flows.stacks.s.pools.p]\ntype = 'k8s'", ["pools.p"]),
    (
        "pool-typo",
        "[tool.oxeo-flows.stacks.s.pools.p]\ntype = 'docker'\nimgae = 'x'",
        ["imgae", "did you mean 'image'"],
    ),
    (
        "bad-scheduling",
        "[tool.oxeo-flows.stacks.s.vertex]\nscheduling-strategy = 'CHEAP'",
        ["vertex.scheduling-strategy"],
    ),
    (
        "extends-missing",
        "[tool.oxeo-flows.stacks.s]\nextends = 'nope'",
        ["extends 'nope', which is not defined"],
    ),
    (
        "extends-cycle",
        "[tool.oxeo-flows.stacks.s]\nextends = 't'\n[tool.oxeo-flows.stacks.t]\nextends = 's'",
        ["cycle"],
    ),
    (
        "top-level-typo",
        "[tool.oxeo-flows]\ndefault_stack = 's'\n[tool.oxeo-flows.stacks.s]",
        ["unknown top-level key 'default_stack'", "did you mean 'default-stack'"],
    ),
    (
        "underscore-table",
        "[tool.oxeo_flows.stacks.s]\nrunner = 'docker'",
        ["spelled [tool.oxeo-flows]"],
    ),
    ("stacks-not-table", "[tool.oxeo-flows]\nstacks = 3", ["'stacks' must be a table"]),
    ("invalid-toml", "#raw[tool.oxeo-flows.stacks.s\nrunner = ", ["not valid TOML"]),
    (
        "default-stack-not-string",
        "[tool.oxeo-flows]\ndefault-stack = 3",
        ["default-stack must be a string"],
    ),
]


@pytest.mark.parametrize(
    ("body", "fragments"), [(b, f) for _, b, f in BAD], ids=[i for i, _, _ in BAD]
)
def test_bad_configuration(stack_file: Any, body: str, fragments: list[str]) -> None:
    path = stack_file(body.removeprefix("#raw"))
    with pytest.raises(ConfigError) as info:
        load_stack("s")
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert str(path.resolve()) in message or str(path) in message, message


def test_bad_input_count_is_a_battery() -> None:
    assert len(BAD) >= 20


def test_unknown_stack_lists_the_defined_ones(stack_file: Any) -> None:
    stack_file(PROD)
    with pytest.raises(
        ConfigError, match=r"Unknown stack 'prdo'.*base, local, prod.*Did you mean 'prod'"
    ):
        load_stack("prdo")


def test_empty_file_gives_local(stack_file: Any) -> None:
    stack_file("")
    assert load_stack().name == "local"
    with pytest.raises(ConfigError, match="Unknown stack 'prod'"):
        load_stack("prod")


def test_env_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEO_FLOWS_GCP__REGOIN", "europe-west4")
    with pytest.raises(ConfigError) as info:
        load_stack()
    assert "gcp.regoin" in str(info.value)
    assert "did you mean 'region'" in str(info.value)
    assert "env OXEO_FLOWS_GCP__REGOIN" in str(info.value)


def test_env_bad_json_and_empty_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEO_FLOWS_DASK__ADAPT", "[1,")
    with pytest.raises(ConfigError, match="OXEO_FLOWS_DASK__ADAPT looks like JSON"):
        load_stack()
    monkeypatch.delenv("OXEO_FLOWS_DASK__ADAPT")
    monkeypatch.setenv("OXEO_FLOWS_GCP____REGION", "x")
    with pytest.raises(ConfigError, match="empty key part"):
        load_stack()


def test_config_env_pointing_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OXEO_FLOWS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="OXEO_FLOWS_CONFIG points to"):
        load_stack()


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_stack_is_immutable() -> None:
    stack = load_stack()
    with pytest.raises(Exception, match="frozen"):
        stack.runner = "docker"  # type: ignore[misc]


def test_section_named_like_a_pool_type_keeps_its_prefix(stack_file: Any) -> None:
    stack_file("[tool.oxeo-flows.stacks.s.docker]\nstream-outptu = true\n")
    with pytest.raises(ConfigError, match=r"docker\.stream-outptu: unknown key"):
        load_stack("s")


def test_pool_errors_hide_the_union_tag(stack_file: Any) -> None:
    stack_file("[tool.oxeo-flows.stacks.s.pools.gpu]\ntype = 'docker'\nauto-remove = 'sometimes'\n")
    with pytest.raises(ConfigError, match=r"pools\.gpu\.auto-remove:"):
        load_stack("s")


def test_a_non_utf8_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.oxeo-flows]\ndefault-stack = "caf\xe9"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"is not UTF-8 text .* re-save it as UTF-8"):
        load_stack()


def test_an_empty_environment_value_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OXEO_FLOWS_GCP__REGION", "")
    with pytest.raises(ConfigError, match=r"OXEO_FLOWS_GCP__REGION is set but empty.*unset"):
        load_stack()


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_infinite_numbers_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OXEO_FLOWS_SECRETS__CACHE_TTL", value)
    with pytest.raises(ConfigError, match=r"secrets.cache-ttl"):
        load_stack()
