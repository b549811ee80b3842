"""A sync never exposes a half-written tree: interrupts, kills, races, garbage collection and
0.2.0 folders, on moto's S3 HTTP server (real processes and signals, faults through boto3's own
event hooks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from oxeo_flows.errors import SyncError
from oxeo_flows.stack import load_stack
from oxeo_flows.storage import pull_code, sync_code
from tests.storage._s3util import (
    Calls,
    as_bytes,
    published,
    remote_keys,
    s3_client,
    write_tree,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def tree(n: int, tag: str) -> dict[str, str | bytes]:
    """``n`` files whose every content depends on ``tag`` (two tags share no object)."""
    return {f"pkg/m{i:03d}.py": f"# {tag} {i}\n" for i in range(n)}


def sync(root: Path, client: Any, **kw: Any) -> Any:
    kw.setdefault("folder", "app")
    return sync_code(
        root, bucket="oxeo-code", client=client, stack=load_stack(), progress=False, **kw
    )


def pulled(dest: Path) -> dict[str, bytes]:
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in sorted(dest.rglob("*"))
        if p.is_file() and p.name != ".oxeo-flows-pull.json"
    }


# A sync of 200 files in a child process, printing "PUT <n>" as each object upload starts;
# upload ``stop_at`` waits (until killed: SIGTERM's default action) or sends the process the
# signal named, SIGTERM then handled as ``oxeo-flows sync`` handles it (``interruptible``).
_CHILD = r"""
import json, os, signal, sys, threading, time
import boto3
from oxeo_flows.stack import load_stack
from oxeo_flows.storage import sync_code

root, stop_at, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = boto3.session.Session().client(
    "s3", region_name="eu-west-1", endpoint_url=os.environ["AWS_ENDPOINT_URL"]
)
lock = threading.Lock()
started = [0]

def on_put(params, **_):
    if "/objects/" not in params["Key"]:
        return
    with lock:
        started[0] += 1
        n = started[0]
    os.write(2, f"PUT {n}\n".encode())  # one write: threads never interleave a line
    if n == stop_at:
        if how == "wait":
            time.sleep(600)
        else:
            os.write(2, b"SIGNALLED\n")
            os.kill(os.getpid(), getattr(signal, how))

client.meta.events.register("provide-client-params.s3.PutObject", on_put)
from contextlib import nullcontext
from oxeo_flows.cli._storage import interruptible  # SIGTERM as oxeo-flows sync handles it
try:
    with nullcontext() if how == "wait" else interruptible():
        sync_code(root, bucket="oxeo-code", folder="app", client=client, stack=load_stack(),
                  progress=False, max_concurrency=4)
except KeyboardInterrupt as exc:
    print("REPORT " + json.dumps({"uploaded": len(exc.report.uploaded),
                                  "pending": len(exc.report.pending),
                                  "notes": exc.__notes__}), file=sys.stderr, flush=True)
    sys.exit(130)
print("DONE", file=sys.stderr, flush=True)
"""


def child(root: Path, stop_at: int, how: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "XDG_CACHE_HOME": str(cwd / "cache")}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), str(stop_at), how],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_mid_upload_pulls_get_the_previous_complete_tree(
    sig: signal.Signals, s3: Any, tmp_path: Path
) -> None:
    old = tree(200, "old")
    root = write_tree(tmp_path / "project", old)
    sync(root, s3)
    new = tree(200, "new")
    write_tree(root, new)

    proc = child(root, 100, "wait", tmp_path)
    assert proc.stderr is not None
    seen = []
    timer = threading.Timer(40, proc.kill)
    timer.start()
    for line in proc.stderr:
        seen.append(line)
        if line.strip() == "PUT 100":
            break
    timer.cancel()
    assert seen[-1].strip() == "PUT 100", "".join(seen)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode == -sig

    objects = remote_keys(s3, "oxeo-code", "app/.oxeo-flows/objects/")
    assert 200 < len(objects) < 400  # the new tree is half uploaded...
    assert published(s3, "oxeo-code", "app") == as_bytes(old)  # ...and not published
    dest = tmp_path / "run"
    pull_code("oxeo-code", "app", directory=str(dest))
    assert pulled(dest) == as_bytes(old)

    # The next sync publishes the new tree, uploading only what the killed one did not.
    calls = Calls(s3)
    sync(root, s3)
    # (at most the 4 uploads in flight when it was killed are sent again)
    assert calls.ops["PutObject"] - 2 <= 200 - 100 + 4
    assert published(s3, "oxeo-code", "app") == as_bytes(new)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupt_stops_scheduling_uploads_at_once(how: str, s3: Any, tmp_path: Path) -> None:
    old = tree(5, "old")
    root = write_tree(tmp_path / "project", old)
    sync(root, s3)
    write_tree(root, tree(200, "new"))

    proc = child(root, 100, how, tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.splitlines()
    after = lines[lines.index("SIGNALLED") + 1 :]
    started_after = [x for x in after if x.startswith("PUT ")]
    # Only the 3 other workers' uploads in flight may still start; nothing queued runs.
    assert len(started_after) <= 4, started_after
    report = json.loads(next(x for x in lines if x.startswith("REPORT ")).removeprefix("REPORT "))
    assert report["uploaded"] <= 104
    assert report["pending"] >= 95
    assert "nothing was published" in report["notes"][0]
    assert "DONE" not in lines
    assert published(s3, "oxeo-code", "app") == as_bytes(old)


def test_two_syncs_racing_one_wins_whole_and_the_other_is_told(s3: Any, tmp_path: Path) -> None:
    sync(write_tree(tmp_path / "base", tree(3, "base")), s3)
    trees = {"a": tree(40, "a"), "b": tree(30, "b")}
    roots = {k: write_tree(tmp_path / k, v) for k, v in trees.items()}
    # Both read the same pointer and upload everything before either switches it.
    barrier = threading.Barrier(2, timeout=60)
    outcome: dict[str, Any] = {}

    def run(name: str) -> None:
        client = s3_client()

        def hold(params: Any, **_: Any) -> None:
            if params["Key"].endswith("/HEAD"):
                barrier.wait()

        client.meta.events.register("provide-client-params.s3.PutObject", hold)
        try:
            outcome[name] = sync(roots[name], client)
        except SyncError as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in trees]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    errors = {k: v for k, v in outcome.items() if isinstance(v, SyncError)}
    assert len(errors) == 1, outcome
    ((loser, error),) = errors.items()
    winner = "b" if loser == "a" else "a"
    assert "Another sync" in str(error)
    assert "NOT published" in str(error)
    assert outcome[winner].digest[:12] in str(error)
    assert published(s3, "oxeo-code", "app") == as_bytes(trees[winner])
    dest = tmp_path / "run"
    assert pull_code("oxeo-code", "app", directory=str(dest))["tree"] == outcome[winner].digest
    assert pulled(dest) == as_bytes(trees[winner])


def test_two_sync_commands_at_once_leave_one_complete_tree(moto: str, tmp_path: Path) -> None:
    from tests.storage._s3util import make_bucket

    client = s3_client()
    make_bucket(client)
    trees = {"a": tree(60, "a"), "b": tree(60, "b")}
    for name, files in trees.items():
        write_tree(tmp_path / name, files)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.oxeo-flows.stacks.local.storage]\nbucket = "oxeo-code"\nfolder = "app"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    main = "import sys; from oxeo_flows.cli import main; sys.argv[0] = 'oxeo-flows'; main()"
    procs = {
        n: subprocess.Popen(
            [sys.executable, "-c", main, "sync", n],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in trees
    }
    done = {n: (p.communicate(timeout=120), p.returncode) for n, p in procs.items()}
    remote = published(client, "oxeo-code", "app")
    assert remote in (as_bytes(trees["a"]), as_bytes(trees["b"]))
    live = "a" if remote == as_bytes(trees["a"]) else "b"
    for name, ((_, err), code) in done.items():
        assert "Traceback" not in err
        if code != 0:  # the loser of a real race is told, and is not the live tree
            assert name != live
            assert "Another sync" in err


def test_garbage_collection_keeps_what_a_live_tree_needs(s3: Any, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "p", {"keep.py": "same\n", **tree(3, "v1")})
    first = sync(root, s3)
    for rel in tree(3, "v1"):
        (root / rel).unlink()
    write_tree(root, tree(3, "v2"))
    # The default grace keeps the replaced tree and its objects (a pull may be reading it).
    second = sync(root, s3)
    assert second.collected == 0
    assert len(remote_keys(s3, "oxeo-code", "app/.oxeo-flows/objects/")) == 7
    # With no grace, a third sync removes the first tree and what only it referenced.
    for rel in tree(3, "v2"):
        (root / rel).unlink()
    write_tree(root, tree(3, "v3"))
    third = sync(root, s3, gc_grace=0)
    assert third.collected == 3 + 3 + 2  # v1 and v2 objects, their two manifests
    keys = remote_keys(s3, "oxeo-code", "app/.oxeo-flows/")
    assert f"app/.oxeo-flows/trees/{first.digest}.json" not in keys
    assert f"app/.oxeo-flows/trees/{third.digest}.json" in keys
    assert len([k for k in keys if "/objects/" in k]) == 4  # keep.py and v3
    assert published(s3, "oxeo-code", "app") == as_bytes({"keep.py": "same\n", **tree(3, "v3")})


def test_a_pull_whose_tree_is_collected_meanwhile_starts_over(s3: Any, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "p", tree(6, "old"))
    sync(root, s3)
    new_root = write_tree(tmp_path / "q", tree(6, "new"))
    puller = s3_client()
    fired: list[int] = []

    def resync_during_pull(params: Any, **_: Any) -> None:
        # After the first object download starts, another sync replaces and collects the tree.
        if "/objects/" in params["Key"] and not fired:
            fired.append(1)
            sync(new_root, s3, gc_grace=0)

    puller.meta.events.register("provide-client-params.s3.GetObject", resync_during_pull)
    from oxeo_flows.storage.pull import _pull

    dest = tmp_path / "run"
    dest.mkdir()
    report = _pull(puller, "oxeo-code", "app", dest, delete=True, workers=1)
    assert fired
    assert pulled(dest) == as_bytes(tree(6, "new"))
    assert report.digest == published_digest(s3)


def published_digest(client: Any) -> str:
    head = client.get_object(Bucket="oxeo-code", Key="app/.oxeo-flows/HEAD")["Body"].read()
    return str(json.loads(head)["tree"])


def test_a_folder_synced_by_0_2_0_is_pulled_then_migrated(
    s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for rel, body in {"flows/a.py": b"A = 1\n", "b.txt": b"b\n"}.items():
        s3.put_object(Bucket="oxeo-code", Key=f"app/{rel}", Body=body)  # 0.2.0's layout
    dest = tmp_path / "run"
    out = pull_code("oxeo-code", "app", directory=str(dest))
    assert out["downloaded"] == 2
    assert pulled(dest) == {"flows/a.py": b"A = 1\n", "b.txt": b"b\n"}
    assert "synced by oxeo-flows 0.2.0" in caplog.text

    root = write_tree(tmp_path / "p", {"flows/a.py": "A = 2\n"})
    report = sync(root, s3)
    assert report.deleted == ("b.txt", "flows/a.py")  # the per-path objects are gone
    keys = remote_keys(s3, "oxeo-code")
    assert all(k.startswith("app/.oxeo-flows/") for k in keys)
    again = pull_code("oxeo-code", "app", directory=str(dest))
    assert pulled(dest) == {"flows/a.py": b"A = 2\n"}
    assert again["deleted"] == 1


def test_pull_of_an_empty_folder_says_to_sync(s3: Any, tmp_path: Path) -> None:
    from oxeo_flows.errors import StorageError

    with pytest.raises(StorageError, match="oxeo-flows sync"):
        pull_code("oxeo-code", "nothing-here", directory=str(tmp_path / "run"))


def test_a_file_changed_after_hashing_is_not_stored_under_a_wrong_name(
    s3: Any, tmp_path: Path
) -> None:
    root = write_tree(tmp_path / "p", {"a.py": "one\n", "b.py": "two\n"})
    client = s3_client()

    def edit_first(params: Any, **_: Any) -> None:
        (root / "b.py").write_text("changed\n", encoding="utf-8")

    client.meta.events.register("provide-client-params.s3.ListObjectsV2", edit_first)
    with pytest.raises(SyncError, match="changed while it was being synced"):
        sync(root, client, max_concurrency=1)
    assert "app/.oxeo-flows/HEAD" not in remote_keys(s3, "oxeo-code")
