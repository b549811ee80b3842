"""``oxeo-flows sync`` and ``oxeo-flows pull`` as fresh processes on moto: they work, and they
import neither Prefect nor prefect-aws (boto3 directly)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.cli._run import run_cli
from tests.storage._s3util import make_bucket, published, s3_client, write_tree

# Runs the CLI, then reports which heavy packages the process imported.
_RUN = """
import json, sys
from oxeo_flows.cli import main
sys.argv[0] = "oxeo-flows"
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
loaded = sorted(m for m in ("prefect", "prefect_aws") if m in sys.modules)
print("IMPORTED " + json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""


def cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    done = run_cli(*args, cwd=cwd, env={"XDG_CACHE_HOME": str(cwd / "cache")}, code=_RUN)
    line = next(x for x in done.stderr.splitlines() if x.startswith("IMPORTED "))
    return done, json.loads(line.removeprefix("IMPORTED "))


def test_sync_then_pull_without_prefect(moto: str, tmp_path: Path) -> None:
    client = s3_client()
    make_bucket(client)
    project = write_tree(tmp_path / "project", {"flows/a.py": "A = 1\n", "b.txt": "b\n"})
    (tmp_path / "pyproject.toml").write_text(
        '[tool.oxeo-flows.stacks.local.storage]\nbucket = "oxeo-code"\nfolder = "app"\n',
        encoding="utf-8",
    )
    done, imported = cli("sync", str(project), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "uploaded 2 file(s)" in done.stdout
    assert imported == []
    assert sorted(published(client, "oxeo-code", "app")) == ["b.txt", "flows/a.py"]

    again, imported = cli("sync", str(project), cwd=tmp_path)
    assert "2 unchanged" in again.stdout
    assert imported == []

    pulled, imported = cli("pull", str(tmp_path / "run"), cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert "downloaded 2" in pulled.stdout
    assert (tmp_path / "run" / "flows" / "a.py").read_text(encoding="utf-8") == "A = 1\n"
    assert imported == []


def test_pull_without_any_bucket_is_a_config_error(tmp_path: Path, moto: Any) -> None:
    done, _ = cli("pull", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 1
    assert "storage.bucket" in done.stderr
    assert "Traceback" not in done.stderr
