"""Code sync to S3: oxeo-flows ``sync_code`` vs prefect-aws ``push_to_s3``, on moto.

A 500-file / ~50 MB project tree is pushed three times by each tool, to its own folder:

1. first push (empty folder),
2. unchanged re-push,
3. re-push after changing one file.

For each push it prints the S3 API requests (counted with boto3's event hooks on the client
each tool uses), the bytes uploaded and the wall time. Then a first push interrupted with
SIGINT half-way (how fast it stops, how many uploads started after the signal) and the push
that resumes it. moto's HTTP server is started by this
script on 127.0.0.1; nothing else is contacted.

Then the command lines, each a fresh process as a user runs them: ``oxeo-flows sync`` against
``aws s3 sync --delete`` (awscli, installed by this script into its own virtualenv under /tmp,
``--awscli-venv``; the comparison is skipped with a message when it cannot be installed), on
the same unchanged tree and the same moto.

Run: ``python benchmarks/code_sync.py [--files 500] [--mib 50] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUCKET = "bench-code"
REGION = "eu-west-1"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_tree(root: Path, files: int, mib: int) -> dict[str, int]:
    """Write ``files`` files totalling about ``mib`` MiB: many small ones, a tenth of big ones."""
    rng = random.Random(42)
    big = max(1, files // 10)
    small = files - big
    small_size = 10 * 1024
    big_size = max(1, (mib * 1024 * 1024 - small * small_size) // big)
    sizes: dict[str, int] = {}
    for i in range(files):
        rel = f"pkg{i % 7}/mod{i % 13}/file_{i:04d}." + ("bin" if i < big else "py")
        size = big_size if i < big else small_size
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        sizes[rel] = size
    return sizes


class Count:
    """Counts S3 calls and uploaded bytes on one boto3 client via its event hooks."""

    def __init__(self, client: Any, sizes: dict[str, int], folder: str) -> None:
        self.ops: Counter[str] = Counter()
        self.bytes = 0
        self._sizes = sizes
        self._prefix = f"{folder}/"
        client.meta.events.register("provide-client-params.s3", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.ops[model.name] += 1
        if model.name == "PutObject":
            key = str(params.get("Key", ""))
            body = params.get("Body")
            if isinstance(body, bytes):  # sync_code: content-addressed objects, JSON
                self.bytes += len(body)
            else:  # push_to_s3: one object per path
                self.bytes += self._sizes.get(key.removeprefix(self._prefix), 0)
        elif model.name == "UploadPart":
            self.bytes += int(params.get("ContentLength") or 0)

    def take(self) -> tuple[int, int, int]:
        """(requests, upload requests, bytes) since the last call; resets."""
        total = sum(self.ops.values())
        puts = self.ops["PutObject"] + self.ops["UploadPart"]
        out = (total, puts, self.bytes)
        self.ops.clear()
        self.bytes = 0
        return out


def run(label: str, push: Callable[[], Any], counter: Count) -> dict[str, Any]:
    """Time one push and read its counters."""
    start = time.perf_counter()
    push()
    seconds = time.perf_counter() - start
    requests, uploads, sent = counter.take()
    return {
        "tool": label,
        "seconds": seconds,
        "requests": requests,
        "uploads": uploads,
        "bytes": sent,
    }


def main() -> None:
    """Start moto, build the tree, run both tools, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (median)")
    parser.add_argument(
        "--awscli-venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "oxeo-bench-awscli",
        help="virtualenv for awscli (created and filled on first use)",
    )
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    try:
        _bench(args.files, args.mib, args.repeat)
        _bench_cli(args.files, args.mib, args.repeat, args.awscli_venv)
    finally:
        server.stop()


def _bench(files: int, mib: int, repeat: int) -> None:
    import boto3
    from prefect_aws.deployments.steps import push_to_s3
    from prefect_aws.s3 import get_s3_client

    from oxeo_flows.stack import load_stack
    from oxeo_flows.storage import sync_code

    boto3.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    stack = load_stack()
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        sizes = make_tree(root, files, mib)
        total = sum(sizes.values())
        print(
            f"tree: {len(sizes)} files, {total / 2**20:.1f} MiB; moto on 127.0.0.1; "
            f"median of {repeat} runs per scenario\n"
        )
        ours_client = boto3.session.Session().client("s3", region_name=REGION)
        prefect_client = get_s3_client()  # the cached client push_to_s3 uses
        edit = root / "pkg1/mod1/file_0001.bin"

        for rep in range(repeat):
            ours_folder, theirs_folder = f"ours-{rep}", f"prefect-{rep}"
            ours = Count(ours_client, sizes, ours_folder)
            theirs = Count(prefect_client, sizes, theirs_folder)

            def sync(folder: str = ours_folder) -> Any:
                return sync_code(
                    root,
                    bucket=BUCKET,
                    folder=folder,
                    client=ours_client,
                    stack=stack,
                    progress=False,
                )

            def push(folder: str = theirs_folder) -> Any:
                cwd = Path.cwd()
                os.chdir(root)
                try:
                    return push_to_s3(bucket=BUCKET, folder=folder)
                finally:
                    os.chdir(cwd)

            original = edit.read_bytes()
            for scenario in ("first push", "unchanged re-push", "one file changed"):
                if scenario == "one file changed":
                    edit.write_bytes(original[::-1])
                rows.append((scenario, run("sync_code", sync, ours)))
                rows.append((scenario, run("push_to_s3", push, theirs)))
            edit.write_bytes(original)

    print(
        f"{'scenario':<20}{'tool':<12}{'requests':>10}{'uploads':>9}{'MiB sent':>10}{'seconds':>9}"
    )
    summary: dict[tuple[str, str], dict[str, float]] = {}
    for scenario in ("first push", "unchanged re-push", "one file changed"):
        for tool in ("sync_code", "push_to_s3"):
            runs = [r for s, r in rows if s == scenario and r["tool"] == tool]
            med = {
                k: statistics.median(r[k] for r in runs)
                for k in ("seconds", "requests", "uploads", "bytes")
            }
            summary[(scenario, tool)] = med
            print(
                f"{scenario:<20}{tool:<12}{med['requests']:>10.0f}{med['uploads']:>9.0f}"
                f"{med['bytes'] / 2**20:>10.1f}{med['seconds']:>9.2f}"
            )
    for scenario in ("unchanged re-push", "one file changed"):
        ratio = (
            summary[(scenario, "push_to_s3")]["seconds"]
            / summary[(scenario, "sync_code")]["seconds"]
        )
        print(f"\n{scenario}: sync_code is {ratio:.1f}x faster than push_to_s3", end="")
    print()
    _bench_interrupt(files, mib, stack)


def _bench_interrupt(files: int, mib: int, stack: Any) -> None:
    """Ctrl-C half-way through a first push, then the push again (it reuses what was sent)."""
    import signal
    import threading

    import boto3

    from oxeo_flows.storage import sync_code

    client = boto3.session.Session().client("s3", region_name=REGION)
    started = [0, 0]  # uploads started; of those, after the signal
    signalled: list[float] = []
    lock = threading.Lock()

    def on_put(params: dict[str, Any], **_: Any) -> None:
        if "/objects/" not in str(params.get("Key", "")):
            return
        with lock:
            started[0] += 1
            if signalled:
                started[1] += 1
            elif started[0] == files // 2:
                signalled.append(time.perf_counter())
                os.kill(os.getpid(), signal.SIGINT)

    client.meta.events.register("provide-client-params.s3.PutObject", on_put)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        make_tree(root, files, mib)

        def push() -> Any:
            return sync_code(
                root,
                bucket=BUCKET,
                folder="interrupted",
                client=client,
                stack=stack,
                progress=False,
            )

        try:
            push()
        except KeyboardInterrupt as exc:
            stopped = time.perf_counter() - signalled[0]
            after = started[1]
            report = exc.report  # type: ignore[attr-defined]
        else:  # pragma: no cover - the signal always arrives
            print("\ninterrupt scenario: the sync finished before the signal")
            return
        sent_before = started[0]
        start = time.perf_counter()
        resumed = push()
        resume_s = time.perf_counter() - start
        resume_uploads = started[0] - sent_before
    print(
        f"\ninterrupted first push (Ctrl-C at upload {files // 2} of {files}, 8 workers): "
        f"stopped {stopped:.2f} s after the signal, {after} upload(s) started after it "
        f"(in flight), {len(report.uploaded)} uploaded, {len(report.pending)} cancelled, "
        f"pointer not switched\nresumed push: {resume_uploads} upload(s), "
        f"{resumed.bytes / 2**20:.1f} MiB, {resume_s:.2f} s (published {resumed.digest[:12]})"
    )


def awscli(venv: Path) -> Path | None:
    """The ``aws`` command of ``venv``, installing awscli there first if needed."""
    aws = venv / "bin" / "aws"
    if aws.exists():
        return aws
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "awscli"],
            check=True,
            timeout=900,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"\nawscli comparison skipped: cannot install awscli into {venv} ({exc})")
        return None
    return aws if aws.exists() else None


def _oxeo_command() -> list[str]:
    script = Path(sys.executable).with_name("oxeo-flows")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from oxeo_flows.cli import main; main()"]


def _timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def _bench_cli(files: int, mib: int, repeat: int, venv: Path) -> None:
    """``oxeo-flows sync`` vs ``aws s3 sync --delete``: the unchanged no-op, fresh processes."""
    aws = awscli(venv)
    if aws is None:
        return
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        make_tree(root, files, mib)
        ours = [*_oxeo_command(), "sync", str(root), "--bucket", BUCKET, "--folder", "cli-ours"]
        theirs = [str(aws), "s3", "sync", str(root), f"s3://{BUCKET}/cli-aws", "--delete"]
        theirs += ["--endpoint-url", endpoint, "--only-show-errors"]
        _timed(ours, Path(tmp))  # first pushes: the no-op runs below find everything in place
        _timed(theirs, Path(tmp))
        runs = max(repeat, 5)
        ours_s = statistics.median(_timed(ours, Path(tmp)) for _ in range(runs))
        theirs_s = statistics.median(_timed(theirs, Path(tmp)) for _ in range(runs))
    version = subprocess.run(
        [str(aws), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"\ncommand line, unchanged {files}-file tree, median of {runs} fresh processes:")
    print(f"  oxeo-flows sync           {ours_s:6.2f} s")
    print(f"  aws s3 sync --delete      {theirs_s:6.2f} s   ({version})")
    print(f"  oxeo-flows / aws = {ours_s / theirs_s:.2f}x (target <= 1.0)")


if __name__ == "__main__":
    main()
