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


_PLAIN_FACTS = """
import json, os
from oxeo_flows.clusters import vm_forkserver
spec = json.dumps({"cls": "dask.distributed.Worker", "opts": {"name": "w"}})
args = ["distributed.cli.dask_spec", "tls://a:1", "--spec", spec]
assert vm_forkserver.plain_worker(args)
first = vm_forkserver.reexec_env()
keys = ["PYTHONHASHSEED", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "EXTRA_VAR",
        "OXEO_DASK_VM_PRE_SPAWN"]
os.environ.update(first or {})  # what the re-executed process starts with
second = vm_forkserver.reexec_env()
import distributed
again = vm_forkserver.recheck_env()
print(json.dumps({
    "first": first and {k: first.get(k) for k in keys},
    "second": second,
    "again": again and {k: again.get(k) for k in keys},
}))
"""


def test_a_plain_worker_is_re_executed_with_the_nannys_environment() -> None:
    from oxeo_flows.clusters import vm_forkserver

    nanny = ["distributed.cli.dask_spec", "a", "--spec", _NANNY]
    assert not vm_forkserver.plain_worker(nanny)  # a Nanny gives its own
    assert not vm_forkserver.plain_worker(["distributed.cli.dask_scheduler"])
    done = run_python(_PLAIN_FACTS, PYTHONHASHSEED="0", OMP_NUM_THREADS="4")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    # PYTHONHASHSEED=0 means "random" to a Nanny too; the image's OMP_NUM_THREADS is kept.
    assert facts["first"] == {
        "PYTHONHASHSEED": "6640",
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "OMP_NUM_THREADS": "4",
        "EXTRA_VAR": None,
        "OXEO_DASK_VM_PRE_SPAWN": "MALLOC_TRIM_THRESHOLD_,MKL_NUM_THREADS,"
        "OPENBLAS_NUM_THREADS,PYTHONHASHSEED",
    }
    assert facts["second"] is None  # once only
    assert facts["again"] is None  # the image's dask config asks for nothing else


def test_a_plain_worker_follows_the_images_pre_spawn_environ(tmp_path: Path) -> None:
    import yaml

    nanny = {"pre-spawn-environ": {"EXTRA_VAR": "1", "PYTHONHASHSEED": 42}}
    (tmp_path / "dask.yaml").write_text(yaml.safe_dump({"distributed": {"nanny": nanny}}))
    done = run_python(_PLAIN_FACTS, DASK_CONFIG=str(tmp_path))
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)["again"]
    # Re-executed a second (and last) time with what the image's config asks for.
    assert again["EXTRA_VAR"] == "1"
    assert again["PYTHONHASHSEED"] == "42"
    assert again["OXEO_DASK_VM_PRE_SPAWN"].endswith(";checked")
    assert "re-executing with the image's pre-spawn-environ" in done.stderr
