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
heavy = ("prefect", "prefect_aws", "typer", "oxeo_flows.stack")
loaded = sorted(m for m in heavy if m in sys.modules)
print("IMPORTED " + json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""


def cli(*args: str, cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env = {"XDG_CACHE_HOME": str(cwd / "cache"), **env}
    done = run_cli(*args, cwd=cwd, env=env, code=_RUN)
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
    assert imported == ["oxeo_flows.stack"]  # resolved once; never typer, Prefect, prefect-aws
    assert sorted(published(client, "oxeo-code", "app")) == ["b.txt", "flows/a.py"]

    again, imported = cli("sync", str(project), cwd=tmp_path)
    assert "2 unchanged" in again.stdout
    assert imported == []  # the resolver's answer is cached: nothing it reads changed

    pulled, imported = cli("pull", str(tmp_path / "run"), cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert "downloaded 2" in pulled.stdout
    assert (tmp_path / "run" / "flows" / "a.py").read_text(encoding="utf-8") == "A = 1\n"
    assert imported == []

    # Any change to what the stack is made of is seen: here the folder in the stack file.
    (tmp_path / "pyproject.toml").write_text(
        '[tool.oxeo-flows.stacks.local.storage]\nbucket = "oxeo-code"\nfolder = "app2"\n',
        encoding="utf-8",
    )
    moved, imported = cli("sync", str(project), cwd=tmp_path)
    assert "s3://oxeo-code/app2: uploaded 2 file(s)" in moved.stdout
    assert imported == ["oxeo_flows.stack"]
    env_moved, _ = cli("sync", str(project), cwd=tmp_path, OXEO_FLOWS_STORAGE__FOLDER="app3")
    assert "s3://oxeo-code/app3" in env_moved.stdout


def test_help_and_bad_options_are_typers(tmp_path: Path) -> None:
    done, imported = cli("sync", "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "--dry-run" in done.stdout
    assert "typer" in imported
    bad, _ = cli("sync", "--no-such-option", cwd=tmp_path)
    assert bad.returncode == 2
    assert "No such option" in bad.stderr


def test_pull_without_any_bucket_is_a_config_error(tmp_path: Path, moto: Any) -> None:
    done, _ = cli("pull", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 1
    assert "storage.bucket" in done.stderr
    assert "Traceback" not in done.stderr
