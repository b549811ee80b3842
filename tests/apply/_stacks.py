"""Stack files used by the apply tests (one function per shape, names made unique)."""

from __future__ import annotations


def block_names(uid: str) -> list[tuple[str, str]]:
    """``(type slug, name)`` of the three blocks `full_stack` / `pair_stack` declare."""
    return [
        ("aws-credentials", f"aws-{uid}"),
        ("s3-bucket", f"code-{uid}"),
        ("docker-registry-credentials", f"ghcr-{uid}"),
    ]


def assert_blocks_marked(uid: str) -> None:
    """Each of the stack's blocks has its marker variable on the server."""
    from prefect.client.orchestration import get_client

    from oxeo_flows.apply import MANAGED_TAG, block_marker

    with get_client(sync_client=True) as client:
        for slug, name in block_names(uid):
            marker = client.read_variable_by_name(block_marker(slug, name))
            assert marker is not None, f"{slug}/{name} has no marker"
            assert MANAGED_TAG in marker.tags
            assert marker.value == {"managed-by": "oxeo-flows", "block": f"{slug}/{name}"}


def full_stack(uid: str, *, machine: str = "n1-standard-4", greeting: str = "hello") -> str:
    """A stack declaring three pools (vertex-ai, docker, process), blocks and variables."""
    return f"""
[tool.oxeo-flows]
default-stack = "prod"

[tool.oxeo-flows.stacks.prod]
runner = "vertex"

[tool.oxeo-flows.stacks.prod.gcp]
project = "oxeo-main"
project-number = "123456789012"
region = "europe-west4"
network = "dask"
reserved-ip-ranges = ["vertex-peering"]
service-account = "prefect@oxeo-main.iam.gserviceaccount.com"

[tool.oxeo-flows.stacks.prod.aws]
region = "eu-west-1"
credentials-block = "aws-{uid}"

[tool.oxeo-flows.stacks.prod.storage]
bucket = "oxeo-code-{uid}"
folder = "pipelines"
block-name = "code-{uid}"

[tool.oxeo-flows.stacks.prod.docker]
image = "prefecthq/prefect:3-python3.11"
registry-url = "ghcr.io"
registry-username = "oxeo-bot"
registry-credentials-block = "ghcr-{uid}"

[tool.oxeo-flows.stacks.prod.pools.vertex-{uid}]
type = "vertex-ai"
image = "europe-docker.pkg.dev/oxeo-main/flows/extract:1"
machine-type = "{machine}"
description = "Vertex AI runs"

[tool.oxeo-flows.stacks.prod.pools.docker-{uid}]
type = "docker"
extra-pip-packages = ["s3fs"]

[tool.oxeo-flows.stacks.prod.pools.process-{uid}]
type = "process"
working-dir = "/srv/flows"
concurrency-limit = 4

[tool.oxeo-flows.stacks.prod.variables]
greeting-{uid} = "{greeting}"
tiles-{uid} = ["31UFU", "31UFT"]
"""


def invalid_pool_stack(uid: str) -> str:
    """The full stack plus one vertex-ai pool without an image (the stack itself loads)."""
    return (
        full_stack(uid)
        + f"""
[tool.oxeo-flows.stacks.prod.pools.broken-{uid}]
type = "vertex-ai"
machine-type = "n1-standard-8"
"""
    )


def pair_stack(one: str, two: str) -> str:
    """Two small stacks, ``one-<one>`` and ``two-<two>``, each with its own blocks and pool."""
    return "\n".join(_small_stack(f"one-{one}", one) + _small_stack(f"two-{two}", two))


def _small_stack(stack: str, uid: str) -> list[str]:
    base = f"tool.oxeo-flows.stacks.{stack}"
    return [
        f"[{base}.aws]",
        'region = "eu-west-1"',
        f'credentials-block = "aws-{uid}"',
        f"[{base}.storage]",
        f'bucket = "oxeo-code-{uid}"',
        f'block-name = "code-{uid}"',
        f"[{base}.docker]",
        'registry-url = "ghcr.io"',
        'registry-username = "oxeo-bot"',
        f'registry-credentials-block = "ghcr-{uid}"',
        f"[{base}.pools.process-{uid}]",
        'type = "process"',
        'working-dir = "/srv/flows"',
        f"[{base}.variables]",
        f'greeting-{uid} = "hello"',
    ]
