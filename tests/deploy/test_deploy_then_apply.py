"""A storage block `deploy_flow` created is ours: a later `apply` manages it without --adopt."""

from __future__ import annotations

import os
from pathlib import Path

from oxeo_flows.apply import apply_stack, block_marker
from oxeo_flows.deploy import deploy_flow
from oxeo_flows.stack import load_stack
from oxeo_flows.storage import storage_block_name
from tests.deploy.test_deploy_e2e import FLOW, stack_toml
from tests.storage._s3util import make_bucket, s3_client, write_tree


def test_apply_after_deploy_recognises_the_storage_block(
    tmp_path: Path, prefect_api: str, moto: str
) -> None:
    from prefect.client.orchestration import get_client

    toml = stack_toml(moto, bucket="oxeo-deploy-apply").replace(
        'folder = "e2e/hello"', 'folder = "e2e/deploy-then-apply"'
    )
    root = write_tree(
        tmp_path / "repo",
        {
            "flows/__init__.py": "",
            "flows/hello.py": FLOW,
            "lib/__init__.py": "",
            "lib/message.py": 'MESSAGE = "hello"\n',
            "pyproject.toml": toml.replace('"e2e-process"', '"deploy-then-apply"'),
        },
    )
    os.chdir(root)
    make_bucket(s3_client(), "oxeo-deploy-apply")
    stack = load_stack()

    deployed = deploy_flow("flows/hello.py:hello", name="then-apply", stack=stack)
    assert deployed.storage_block is not None
    assert deployed.storage_block.action == "created"
    name = storage_block_name(stack, deployed.sync.folder if deployed.sync else None)
    with get_client(sync_client=True) as api:
        assert api.read_variable_by_name(block_marker("s3-bucket", name)) is not None

    plan = apply_stack(stack)  # no adopt: the block is recognised as ours
    storage = [item for item in plan.items if item.kind == "block" and item.name == name]
    assert storage, [(i.kind, i.name) for i in plan.items]
    assert storage[0].action == "unchanged", storage[0].changes
