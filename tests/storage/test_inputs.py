"""What sync_code / pull_code accept and refuse: S3Bucket blocks, stack names, bad trees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oxeo_flows.errors import ConfigError, StorageError, SyncError
from oxeo_flows.storage import file_digest, pull_code, s3_bucket, sync_code
from tests.storage._s3util import published, remote_keys, write_tree

TREE: dict[str, str | bytes] = {"flows/a.py": "A = 1\n", "lib/b.py": "B = 2\n"}

STACK = """
[tool.oxeo-flows.stacks.prod.aws]
region = "eu-west-1"
endpoint-url = "{moto}"

[tool.oxeo-flows.stacks.prod.storage]
bucket = "oxeo-code"
folder = "from-stack"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "project", TREE)


def test_sync_and_pull_accept_the_block_s3_bucket_returns(
    project: Path, s3: Any, moto: str, stack_file: Any, tmp_path: Path
) -> None:
    stack_file(STACK.format(moto=moto))
    block = s3_bucket("oxeo-code", "blocked", stack="prod")
    report = sync_code(project, bucket=block, progress=False)
    assert report.url == "s3://oxeo-code/blocked"  # the block's folder, not the stack's
    assert sorted(published(s3, "oxeo-code", "blocked")) == ["flows/a.py", "lib/b.py"]
    out = pull_code(block, directory=str(tmp_path / "run"))
    assert out["downloaded"] == 2
    again = pull_code(block=block, directory=str(tmp_path / "run"))
    assert again["skipped"] == 2


def test_stack_may_be_a_name(project: Path, s3: Any, moto: str, stack_file: Any) -> None:
    stack_file(STACK.format(moto=moto))
    report = sync_code(project, stack="prod", progress=False)
    assert report.url == "s3://oxeo-code/from-stack"


def test_something_else_as_bucket_is_a_config_error(project: Path) -> None:
    with pytest.raises(ConfigError, match="bucket name or an S3Bucket block"):
        sync_code(project, bucket=42, progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("src", ["", "   "])
def test_empty_source_is_a_config_error(src: str, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(write_tree(tmp_path, TREE))
    with pytest.raises(ConfigError, match="sync source is empty"):
        sync_code(src, bucket="oxeo-code", progress=False)


def test_symlink_out_of_the_tree_is_refused(project: Path, s3: Any, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_text("PRIVATE", encoding="utf-8")
    (project / "key").symlink_to(secret)
    with pytest.raises(ConfigError, match=r"'key' .* symlink .* outside"):
        sync_code(project, bucket="oxeo-code", client=s3, progress=False)
    (project / "key").unlink()
    (project / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(ConfigError, match="'elsewhere'"):
        sync_code(project, bucket="oxeo-code", client=s3, progress=False)
    assert remote_keys(s3, "oxeo-code") == []


def test_symlink_inside_the_tree_is_followed(project: Path, s3: Any) -> None:
    (project / "alias.py").symlink_to(project / "flows" / "a.py")
    report = sync_code(project, bucket="oxeo-code", folder="f", client=s3, progress=False)
    assert "alias.py" in report.uploaded


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"gone\.py"):
        file_digest(tmp_path / "gone.py")


def test_file_vanishing_mid_sync_is_a_sync_error_naming_it(project: Path, s3: Any) -> None:
    def remove_after_listing(**_: Any) -> None:
        (project / "lib" / "b.py").unlink(missing_ok=True)

    # Runs after the tree was hashed, before the uploads: the file is gone when it is sent.
    s3.meta.events.register("after-call.s3.ListObjectsV2", remove_after_listing, unique_id="vanish")
    with pytest.raises(SyncError, match=r"lib/b\.py") as info:
        sync_code(project, bucket="oxeo-code", folder="v", client=s3, progress=False)
    assert info.value.report.failed == ("lib/b.py",)


def test_digest_cache_reuses_untouched_files_and_sees_every_write(tmp_path: Path) -> None:
    import json
    import os
    from concurrent.futures import ThreadPoolExecutor

    from oxeo_flows.storage.files import DigestCache, scan

    root = write_tree(tmp_path / "tree", TREE)
    rels = sorted(TREE)
    with ThreadPoolExecutor(2) as pool:
        first = scan(root, rels, pool, DigestCache(root, margin=0))
        path = DigestCache(root).path
        assert path.is_file()
        assert str(tmp_path) in str(path)  # under XDG_CACHE_HOME, never in the tree
        # Proof of reuse: a digest planted in the cache is returned for the untouched file.
        data = json.loads(path.read_text(encoding="utf-8"))
        data["files"]["flows/a.py"][4] = "planted"
        path.write_text(json.dumps(data), encoding="utf-8")
        again = {f.rel: f.digest for f in scan(root, rels, pool, DigestCache(root, margin=0))}
        assert again["flows/a.py"].md5 == "planted"
        # Same size, same mtime, other content: the ctime changed, so it is hashed again.
        target = root / "lib" / "b.py"
        st = target.stat()
        target.write_text("B = 3\n", encoding="utf-8")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        third = scan(root, rels, pool, DigestCache(root, margin=0))
    changed = {f.rel: f.digest for f in third}["lib/b.py"]
    assert changed == file_digest(target)
    assert changed != {f.rel: f.digest for f in first}["lib/b.py"]
