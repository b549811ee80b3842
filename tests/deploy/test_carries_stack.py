"""A deployment carries its stack: its runs, started by a real worker, resolve that stack.

Also the seams around it: re-targeting needs ``force``, unknown parameters are refused, the
description is the flow's docstring, and runs that cannot see the local directory need storage.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oxeo_flows import deploy_flow
from oxeo_flows.errors import ConfigError, DeployError
from tests.deploy._worker import run_with_worker
from tests.storage._s3util import write_tree

FLOW = '''
from pathlib import Path

from prefect import flow

from oxeo_flows import load_secret, load_stack


@flow(name="carry")
def carry(out: str, tiles: int = 1) -> str:
    """Report the stack this run resolved, and a secret only that stack can read."""
    text = f"{load_stack().name}:{load_secret('carry-token').get_secret_value()}"
    Path(out).write_text(text, encoding="utf-8")
    return text
'''

STACKS = """
[tool.oxeo-flows]
default-stack = "local"

[tool.oxeo-flows.stacks.local]
secrets.sources = ["env"]

[tool.oxeo-flows.stacks.staging]
runner = "process"
work-pool = "carry-process"
secrets.sources = ["prefect"]

[tool.oxeo-flows.stacks.remote]
runner = "docker"
work-pool = "carry-docker"
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = write_tree(tmp_path / "repo", {"flows/carry.py": FLOW, "pyproject.toml": STACKS})
    os.chdir(root)
    return root


@pytest.mark.timeout(300)
def test_a_run_resolves_the_stack_it_was_deployed_with(
    repo: Path, prefect_api: str, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    Secret(value="staging-token-value").save("carry-token", overwrite=True)
    result = deploy_flow("flows/carry.py:carry", name="staging", stack="staging")
    assert result.action == "created"
    assert result.job_variables == {"env": {"OXEO_FLOWS_STACK": "staging"}}
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("carry/staging")
        pool = client.read_work_pool("carry-process")
    assert dep.description == (
        "Report the stack this run resolved, and a secret only that stack can read."
    )
    assert pool.base_job_template["variables"]["properties"]["env"]["default"] == {
        "OXEO_FLOWS_STACK": "staging"
    }

    # The worker runs without OXEO_FLOWS_STACK, in a directory of its own; the repo's
    # default-stack is "local", whose env source has no carry-token.
    workdir = tmp_path / "worker"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXEO_FLOWS_")}
    run_with_worker("carry/staging", workdir / "out.txt", "carry-process", env=env)
    assert (workdir / "out.txt").read_text(encoding="utf-8") == "staging:staging-token-value"


def test_retargeting_needs_force(repo: Path, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    deploy_flow("flows/carry.py:carry", name="moved", stack="staging")
    # From another stack (and so another pool): refused, and nothing changes.
    with pytest.raises(DeployError, match=r"runs on work pool 'carry-process'.*--force"):
        deploy_flow("flows/carry.py:carry", name="moved", stack="local")
    with pytest.raises(DeployError, match=r"deployed from stack 'staging'.*--force"):
        deploy_flow("flows/carry.py:carry", name="moved", stack="local", work_pool="carry-process")
    with get_client(sync_client=True) as client:
        assert client.read_deployment_by_name("carry/moved").work_pool_name == "carry-process"
    moved = deploy_flow("flows/carry.py:carry", name="moved", stack="local", force=True)
    assert moved.action == "updated"
    assert moved.work_pool == "local-process"


def test_unknown_parameter_is_refused_before_any_write(repo: Path, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    with pytest.raises(ConfigError, match=r"no parameter 'tile' \(did you mean 'tiles'\?\)"):
        deploy_flow("flows/carry.py:carry", name="params", stack="staging", parameters={"tile": 3})
    with get_client(sync_client=True) as client:
        names = [d.name for d in client.read_deployments()]
    assert "params" not in names
    ok = deploy_flow(
        "flows/carry.py:carry", name="params", stack="staging", parameters={"tiles": 3}
    )
    assert ok.action == "created"


def test_remote_pool_without_storage_is_refused_before_any_write(
    repo: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    with pytest.raises(DeployError, match=r"'carry-docker' \(docker\) cannot see .*storage.bucket"):
        deploy_flow("flows/carry.py:carry", name="docker", stack="remote")
    with get_client(sync_client=True) as client:
        assert "carry-docker" not in [p.name for p in client.read_work_pools()]
    monkeypatch.setenv("OXEO_FLOWS_STORAGE__IMAGE_CODE_DIR", "/opt/prefect/carry")
    result = deploy_flow("flows/carry.py:carry", name="docker", stack="remote", dry_run=True)
    assert result.source == "image:/opt/prefect/carry"
    assert "would create" in result.summary()


def test_loaded_secret_in_parameters_or_job_is_refused(repo: Path, prefect_api: str) -> None:
    from oxeo_flows._redact import register_secret_value

    token = "ghp_Zq8XvK2mLw9TnB4rYc7HdJ5sPf3Ga1Eu"
    register_secret_value(token)
    with pytest.raises(ConfigError, match=r"deploy_flow\(parameters=\)") as info:
        deploy_flow("flows/carry.py:carry", name="leak", stack="staging", parameters={"out": token})
    assert token not in str(info.value)
    with pytest.raises(ConfigError, match=r"deploy_flow\(job=\)"):
        deploy_flow("flows/carry.py:carry", name="leak", stack="staging", job={"env": {"T": token}})
