"""A Nanny worker VM's forkserver (`oxeo_flows.clusters.vm_forkserver`), in real processes.

The end-to-end check (a worker process on an emulated GCE VM forked from it, with the Nanny's
environment) is in tests/e2e/test_tls_vms.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._util import run_python

_NANNY = json.dumps({"cls": "dask.distributed.Nanny", "opts": {"name": "w"}})
_FORKSERVER_FACTS = f"""
import json, os
from oxeo_flows.clusters import vm_forkserver
started = vm_forkserver.start(["distributed.cli.dask_spec", "tls://a:1", "--spec", {_NANNY!r}])
import distributed, dask.config
adopted = vm_forkserver.adopt(started)
env = {{}}
if adopted:
    with open(f"/proc/{{started.pid}}/environ", "rb") as f:
        env = dict(v.decode().split("=", 1) for v in f.read().split(b"\\0") if b"=" in v)
print(json.dumps({{
    "started": started is not None,
    "adopted": adopted,
    "method": dask.config.get("distributed.worker.multiprocessing-method"),
    "seed": env.get("PYTHONHASHSEED"),
    "trim": env.get("MALLOC_TRIM_THRESHOLD_"),
    "omp": env.get("OMP_NUM_THREADS"),
}}))
"""


def test_a_nanny_worker_vm_starts_its_forkserver_first() -> None:
    from oxeo_flows.clusters import vm_forkserver

    worker = json.dumps({"cls": "dask.distributed.Worker", "opts": {}})
    assert vm_forkserver.start(["distributed.cli.dask_scheduler", "--port", "8786"]) is None
    assert vm_forkserver.start(["distributed.cli.dask_spec", "a", "--spec", worker]) is None
    done = run_python(_FORKSERVER_FACTS)
    assert done.returncode == 0, done.stderr
    # The forkserver got the environment the Nanny gives a spawned worker.
    assert json.loads(done.stdout) == {
        "started": True,
        "adopted": True,
        "method": "forkserver",
        "seed": "6640",
        "trim": "65536",
        "omp": "1",
    }


@pytest.mark.parametrize(
    ("variables", "why"),
    [({"EXTRA_VAR": "1"}, "EXTRA_VAR"), ({"PYTHONHASHSEED": 42}, "PYTHONHASHSEED")],
)
def test_a_pre_spawn_environ_the_forkserver_lacks_falls_back_to_spawn(
    variables: dict[str, object], why: str, tmp_path: Path
) -> None:
    import yaml

    config = tmp_path / "dask.yaml"
    nanny = {"pre-spawn-environ": variables}
    config.write_text(yaml.safe_dump({"distributed": {"nanny": nanny}}))
    done = run_python(_FORKSERVER_FACTS, DASK_CONFIG=str(tmp_path))
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["started"]
    assert not facts["adopted"]
    assert facts["method"] == "spawn"
    assert why in done.stderr


def test_a_method_the_image_chose_is_kept() -> None:
    done = run_python(_FORKSERVER_FACTS, DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD="spawn")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["started"] is False
