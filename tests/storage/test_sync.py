"""sync_code and pull_code against moto's real S3 HTTP server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from oxeo_flows.errors import StorageError, SyncError
from oxeo_flows.stack import load_stack
from oxeo_flows.storage import code_files, pull_code, sync_code
from tests.storage._s3util import (
    Calls,
    as_bytes,
    make_bucket,
    published,
    remote_keys,
    s3_client,
    write_tree,
)

MiB = 1024 * 1024

TREE: dict[str, str | bytes] = {
    "flows/hello.py": "from prefect import flow\n",
    "flows/__init__.py": "",
    "lib/util.py": "X = 1\n",
    "lib/data/table.csv": "a,b\n1,2\n",
    "README.md": "# demo\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "project", TREE)


def sync(project: Path, client: Any, **kw: Any) -> Any:
    kw.setdefault("bucket", "oxeo-code")
    kw.setdefault("folder", "app")
    kw.setdefault("progress", False)
    return sync_code(project, client=client, stack=load_stack(), **kw)


def test_first_sync_uploads_every_file_then_nothing(project: Path, s3: Any) -> None:
    calls = Calls(s3)
    first = sync(project, s3)
    assert calls.ops["PutObject"] == len(TREE) + 2  # the objects, the manifest, the pointer
    assert sorted(first.uploaded) == sorted(TREE)
    keys = remote_keys(s3, "oxeo-code")
    assert len([k for k in keys if k.startswith("app/.oxeo-flows/objects/")]) == len(TREE)
    assert "app/.oxeo-flows/HEAD" in keys
    assert f"app/.oxeo-flows/trees/{first.digest}.json" in keys
    assert published(s3, "oxeo-code", "app") == as_bytes(TREE)
    assert first.bytes == sum(len(v) for v in TREE.values())

    calls.reset()
    again = sync(project, s3)
    assert calls.ops["PutObject"] == 0
    assert again.uploaded == ()
    assert sorted(again.skipped) == sorted(TREE)
    assert not again.changed
    assert again.digest == first.digest
    assert again.requests == {"GetObject": 1}  # the pointer names this very tree


def test_one_edited_file_is_one_put_and_one_deleted_file_is_one_delete(
    project: Path, s3: Any
) -> None:
    import hashlib

    first = sync(project, s3)
    calls = Calls(s3)
    (project / "lib/util.py").write_text("X = 22\n", encoding="utf-8")
    edited = sync(project, s3)
    sha = hashlib.sha256(b"X = 22\n").hexdigest()
    assert calls.keys["PutObject"] == [
        f"app/.oxeo-flows/objects/{sha}",
        f"app/.oxeo-flows/trees/{edited.digest}.json",
        "app/.oxeo-flows/HEAD",
    ]
    assert edited.uploaded == ("lib/util.py",)
    assert edited.digest != first.digest
    assert published(s3, "oxeo-code", "app")["lib/util.py"] == b"X = 22\n"

    calls.reset()
    (project / "README.md").unlink()
    removed = sync(project, s3)
    assert calls.ops["PutObject"] == 2  # a new manifest and the pointer: no content
    assert removed.deleted == ("README.md",)
    assert "README.md" not in published(s3, "oxeo-code", "app")


def test_same_size_edit_is_detected(project: Path, s3: Any) -> None:
    sync(project, s3)
    (project / "lib/util.py").write_text("X = 2\n", encoding="utf-8")  # same length
    assert sync(project, s3).uploaded == ("lib/util.py",)


def test_delete_false_keeps_stale_objects(project: Path, s3: Any) -> None:
    sync(project, s3)
    (project / "README.md").unlink()
    report = sync(project, s3, delete=False)
    assert report.deleted == ()
    assert published(s3, "oxeo-code", "app")["README.md"] == b"# demo\n"


def test_other_folders_are_never_touched(project: Path, s3: Any) -> None:
    s3.put_object(Bucket="oxeo-code", Key="other/keep.py", Body=b"x")
    s3.put_object(Bucket="oxeo-code", Key="app-old/keep.py", Body=b"x")
    sync(project, s3)
    keys = remote_keys(s3, "oxeo-code")
    assert "other/keep.py" in keys
    assert "app-old/keep.py" in keys


def test_ignore_rules(tmp_path: Path, s3: Any) -> None:
    root = write_tree(
        tmp_path / "p",
        {
            "flow.py": "x",
            ".gitignore": "*.log\nsecrets/\n",
            ".prefectignore": "data/*.parquet\n!data/keep.parquet\n",
            "run.log": "noise",
            "secrets/key.pem": "k",
            "data/big.parquet": "p",
            "data/keep.parquet": "p",
            ".git/HEAD": "ref",
            "pkg/__pycache__/m.cpython-311.pyc": "c",
            "pkg/m.py": "m",
            "pkg/m.pyc": "c",
            "myenv/pyvenv.cfg": "home = /usr",
            "myenv/lib/site.py": "s",
            ".venv/lib/x.py": "s",
            "build/lib/x.py": "b",
            "dist/x-1.0.whl": "w",
            "x.egg-info/PKG-INFO": "i",
            "notes/draft.md": "d",
        },
    )
    expected = [
        ".gitignore",
        ".prefectignore",
        "data/keep.parquet",
        "flow.py",
        "pkg/m.py",
    ]
    assert code_files(root, ignore=["notes/"]) == expected
    # storage.ignore from the stack is honoured too.
    stack = load_stack(overrides={"storage": {"ignore": ["notes/"]}})
    report = sync_code(root, bucket="oxeo-code", folder="p", client=s3, stack=stack, progress=False)
    assert sorted(report.uploaded) == expected
    assert sorted(published(s3, "oxeo-code", "p")) == expected


def test_multipart_file_is_stored_once_by_its_hash(tmp_path: Path, s3: Any) -> None:
    root = write_tree(tmp_path / "p", {"flow.py": "x", "model.bin": os.urandom(6 * MiB)})
    calls = Calls(s3)
    sync(root, s3, multipart_threshold=5 * MiB)
    assert calls.ops["CreateMultipartUpload"] == 1
    assert calls.ops["UploadPart"] == 2
    assert published(s3, "oxeo-code", "app") == {
        "flow.py": b"x",
        "model.bin": (root / "model.bin").read_bytes(),
    }

    calls.reset()
    again = sync(root, s3, multipart_threshold=5 * MiB)
    assert again.uploaded == ()
    assert calls.ops["CreateMultipartUpload"] == 0
    assert calls.ops["PutObject"] == 0

    # Same size, different content: re-uploaded.
    (root / "model.bin").write_bytes(os.urandom(6 * MiB))
    assert sync(root, s3, multipart_threshold=5 * MiB).uploaded == ("model.bin",)


def test_dry_run_writes_nothing(project: Path, s3: Any) -> None:
    s3.put_object(Bucket="oxeo-code", Key="app/stale.py", Body=b"old")
    calls = Calls(s3)
    report = sync(project, s3, dry_run=True)
    assert report.dry_run
    assert sorted(report.uploaded) == sorted(TREE)
    assert report.deleted == ("stale.py",)
    assert calls.ops["PutObject"] == calls.ops["DeleteObject"] == 0
    assert remote_keys(s3, "oxeo-code") == ["app/stale.py"]
    assert "would upload" in report.summary()


def test_failure_half_way_reports_what_was_and_was_not_uploaded(project: Path, s3: Any) -> None:
    import hashlib

    from botocore.exceptions import EndpointConnectionError

    s3.put_object(Bucket="oxeo-code", Key="app/stale.py", Body=b"old")  # as 0.2.0 synced it
    table = hashlib.sha256(b"a,b\n1,2\n").hexdigest()

    def cut_network(params: Any, **_: Any) -> None:
        # A real fault injected through boto3's event system on the client in use.
        if params.get("Key") == f"app/.oxeo-flows/objects/{table}":
            raise EndpointConnectionError(endpoint_url=os.environ["AWS_ENDPOINT_URL"])

    s3.meta.events.register("provide-client-params.s3.PutObject", cut_network, unique_id="cut")
    order = sorted(TREE)  # uploads are submitted in path order; one worker makes it exact
    with pytest.raises(SyncError) as info:
        sync(project, s3, max_concurrency=1)
    report = info.value.report
    failed_at = order.index("lib/data/table.csv")
    assert report.uploaded == tuple(order[:failed_at])
    assert report.failed == ("lib/data/table.csv",)
    assert report.pending == tuple(order[failed_at + 1 :])
    assert report.deleted == ()
    assert "Nothing was published" in str(info.value)
    keys = remote_keys(s3, "oxeo-code")
    assert "app/stale.py" in keys  # the old tree is untouched
    assert "app/.oxeo-flows/HEAD" not in keys
    objects = [k for k in keys if k.startswith("app/.oxeo-flows/objects/")]
    assert len(objects) == failed_at

    # Fixed: the next sync uploads only what is missing.
    s3.meta.events.unregister("provide-client-params.s3.PutObject", unique_id="cut")
    calls = Calls(s3)
    done = sync(project, s3, max_concurrency=1)
    assert calls.ops["PutObject"] == len(order) - failed_at + 2
    assert sorted(done.uploaded) == order
    assert done.deleted == ("stale.py",)
    assert remote_keys(s3, "oxeo-code", "app/stale") == []  # 0.2.0's objects are migrated


def test_missing_bucket_is_a_storage_error(project: Path, moto: str) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        sync(project, s3_client(), bucket="no-such-bucket")


def test_default_client_uses_stack_endpoint(project: Path, moto: str) -> None:
    client = s3_client()
    make_bucket(client, "from-stack")
    stack = load_stack(
        overrides={
            "aws": {"endpoint_url": moto},
            "storage": {"bucket": "from-stack", "folder": "code/v1"},
        }
    )
    report = sync_code(project, stack=stack, progress=False)
    assert report.url == "s3://from-stack/code/v1"
    assert published(client, "from-stack", "code/v1") == as_bytes(TREE)


def test_folder_defaults_to_the_directory_name(project: Path, s3: Any) -> None:
    report = sync_code(project, bucket="oxeo-code", client=s3, stack=load_stack(), progress=False)
    assert report.folder == "project"


def test_pull_code_downloads_only_changes_and_removes_stale(
    project: Path, s3: Any, tmp_path: Path
) -> None:
    sync(project, s3)
    dest = tmp_path / "run"
    dest.mkdir()
    (dest / "mine.txt").write_text("not from S3", encoding="utf-8")
    out = pull_code("oxeo-code", "app", directory=str(dest))
    assert out["directory"] == str(dest.resolve())
    assert out["downloaded"] == len(TREE)
    assert (dest / "lib/util.py").read_text(encoding="utf-8") == "X = 1\n"

    again = pull_code("oxeo-code", "app", directory=str(dest))
    assert again["downloaded"] == 0
    assert again["skipped"] == len(TREE)

    (project / "lib/util.py").write_text("X = 3\n", encoding="utf-8")
    (project / "lib/data/table.csv").unlink()
    sync(project, s3)
    third = pull_code("oxeo-code", "app", directory=str(dest))
    assert third["downloaded"] == 1
    assert third["deleted"] == 1
    assert (dest / "lib/util.py").read_text(encoding="utf-8") == "X = 3\n"
    assert not (dest / "lib/data").exists()  # emptied directories go too
    assert (dest / "mine.txt").exists()  # never touch files we did not pull


def test_pull_code_step_is_exposed_by_steps_module() -> None:
    from oxeo_flows import steps

    assert steps.pull_code is pull_code
