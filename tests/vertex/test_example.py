"""examples/gcp_vertex_dask: its stacks, job variables and prefect.yaml, validated offline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from oxeo_flows import vertex_job
from oxeo_flows.pools import default_base_job_template
from oxeo_flows.stack import load_stack
from oxeo_flows.vertex import ENTRYPOINT_MODULE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gcp_vertex_dask"


def _prod_variables() -> dict[str, Any]:
    return vertex_job(stack=load_stack("prod", project_dir=EXAMPLE)).job_variables()


def test_job_variables_validate_against_the_pool_schema() -> None:
    from prefect.utilities.schema_tools import validate

    variables = _prod_variables()
    schema = default_base_job_template("vertex-ai")["variables"]
    assert set(variables) <= set(schema["properties"])
    # What the Prefect server runs on a deployment's job variables.
    validate(variables, schema, raise_on_error=True, preprocess=True, ignore_required=False)
    assert variables["network"] == "projects/123456789012/global/networks/dask"
    assert variables["reserved_ip_ranges"] == ["vertex-peering"]
    assert variables["maximum_run_time_hours"] == 12
    assert variables["env"]["PREFECT_API_KEY"] is None
    assert variables["command"].startswith(f"python -m {ENTRYPOINT_MODULE} ")


def test_prefect_yaml_matches_the_stack() -> None:
    from oxeo_flows.pools.kinds import pool_defaults

    document = yaml.safe_load((EXAMPLE / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = document["deployments"]
    stack = load_stack("prod", project_dir=EXAMPLE)
    assert deployment["work_pool"]["name"] == stack.default_work_pool
    # What deploy_flow puts on the deployment: the pool's environment, with the stack.
    _, defaults = pool_defaults(stack, stack.default_work_pool, block_ids=lambda slug, name: "id")
    assert deployment["work_pool"]["job_variables"] == {"env": defaults["env"]}
    assert defaults["env"]["OXEO_FLOWS_STACK"] == "prod"
    assert (EXAMPLE / deployment["entrypoint"].split(":")[0]).is_file()
    workdir = document["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert workdir == stack.storage.image_code_dir
    assert f"WORKDIR {workdir}" in (EXAMPLE / "Dockerfile").read_text(encoding="utf-8")


def test_dask_runner_settings_are_private() -> None:
    # Through the package, as users do.
    from oxeo_flows import dask_runner

    runner = dask_runner(stack=load_stack("prod", project_dir=EXAMPLE))
    kwargs = runner.cluster_kwargs
    assert kwargs["public_ip"] is False
    assert kwargs["tls"] is True
    assert (kwargs["network"], kwargs["subnetwork"]) == ("dask", "dask-europe-west4")
    assert kwargs["zone"].startswith(load_stack("prod", project_dir=EXAMPLE).gcp.region or "?")
    # Tasks run in the same image as the flow run, so versions match on both sides.
    assert kwargs["docker_image"] == _prod_variables()["image"]


def test_flow_module_imports_under_both_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLE)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name, backend in (("local", "local"), ("prod", "gcp")):
        monkeypatch.setenv("OXEO_FLOWS_STACK", name)
        spec = importlib.util.spec_from_file_location(
            f"_example_extract_{name}", "flows/extract.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.extract.task_runner.backend == backend
        sys.modules.pop(spec.name, None)


def test_the_guides_configuration_renders(tmp_path: Path) -> None:
    import re

    guide = (EXAMPLE.parents[1] / "docs" / "guides" / "vertex.md").read_text(encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(
        "\n".join(re.findall(r"```toml\n(.*?)```", guide, re.S)), encoding="utf-8"
    )
    stack = load_stack("prod", project_dir=tmp_path)
    assert vertex_job(stack=stack).job_variables()["maximum_run_time_hours"] == 12
    gpu = vertex_job(stack=stack, pool="gpu").job_variables()
    assert (gpu["accelerator_type"], gpu["scheduling"]["strategy"]) == ("NVIDIA_L4", "SPOT")


def test_deploy_dry_run_works_as_the_readme_says(prefect_api: str) -> None:
    """`python deploy.py --dry-run` from the example folder: no traceback, nothing written."""
    import os
    import subprocess

    from prefect.client.orchestration import get_client

    def snapshot() -> tuple[Any, ...]:
        with get_client(sync_client=True) as client:
            pools = sorted((p.name, str(p.updated)) for p in client.read_work_pools())
            deployments = sorted((d.name, str(d.updated)) for d in client.read_deployments())
        return (pools, deployments)

    before = snapshot()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXEO_FLOWS_")}
    proc = subprocess.run(
        [sys.executable, "deploy.py", "--dry-run"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "[dry run] deployment extract/extract:" in out, out
    assert "work pool prod-vertex (vertex-ai):" in out, out
    with get_client(sync_client=True) as client:
        names = [b.name for b in client.read_block_documents()]
    if "vertex-submitter" not in names:  # another test may have saved one on this server
        assert "block 'gcp-credentials/vertex-submitter' does not exist yet" in out, out
    assert snapshot() == before  # a dry run writes nothing
