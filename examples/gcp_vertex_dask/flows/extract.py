"""Extract satellite tiles on a private Dask cluster; the flow run itself runs on Vertex AI."""

from __future__ import annotations

import os

from prefect import flow, task

from oxeo_flows import dask_runner, load_secret


@task
def extract_tile(tile: str, token_length: int) -> str:
    """Pretend to extract one tile (a real task would call the satellite API)."""
    return f"{tile}:{token_length}"


@flow(name="extract", task_runner=dask_runner())
def extract(tiles: list[str] | None = None, n_workers: int = 4) -> list[str]:
    """Extract ``tiles`` in parallel; ``n_workers`` sizes the Dask cluster (see the stack)."""
    # The job's environment holds the secret's NAME; its value is loaded here, at run time.
    token = load_secret(os.environ.get("SAT_TOKEN_SECRET", "sat-extractor-sa"))
    futures = extract_tile.map(tiles or ["31UFU", "31UGU"], len(token.get_secret_value()))
    return [f.result() for f in futures]


if __name__ == "__main__":
    print(extract())
