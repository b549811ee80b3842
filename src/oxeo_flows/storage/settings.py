"""What code storage reads of a stack, and a cache of it for the command line.

`StackView` holds the few stack values `sync_code` / `pull_code` need (``storage.*``, the
``[aws]`` client settings, where each came from). `cached_view` returns the view of the
stack `oxeo_flows.stack.resolve_stack` resolves, without importing the stack models (pydantic,
~0.25 s of a ~0.6 s ``oxeo-flows sync``) when nothing it depends on changed since the last
run. The resolver stays the one source: the cache only remembers its answer, keyed on the
working directory, the stack argument, every ``OXEO_FLOWS_*`` variable, the content of every
configuration file the resolver could have read (each candidate ``oxeo-flows.toml`` /
``pyproject.toml`` from the working directory up, present or not) and the size and time of
every source file of oxeo-flows itself (the stack models and their validators). Any difference
is a miss and the stack is resolved again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["AwsView", "StackView", "StorageView", "cached_view", "view_of"]

_CACHE_FORMAT = 1
_NAMES = ("oxeo-flows.toml", "pyproject.toml")


@dataclass(frozen=True)
class StorageView:
    """``storage.*`` of a stack."""

    bucket: str | None = None
    folder: str | None = None
    ignore: tuple[str, ...] = ()
    delete: bool = True
    max_concurrency: int = 8
    block_name: str | None = None


@dataclass(frozen=True)
class AwsView:
    """The ``[aws]`` settings of the S3 client."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    assume_role_arn: str | None = None


@dataclass(frozen=True)
class StackView:
    """The stack values code storage needs; ``load()`` gives the full `Stack`."""

    name: str
    storage: StorageView
    aws: AwsView
    described: dict[str, str] = field(default_factory=dict)
    arg: str | None = None

    def describe(self, *path: str) -> str:
        """As `Stack.describe` (for the keys the view holds)."""
        return self.described.get(".".join(path), f"{'.'.join(path)} of stack {self.name!r}")

    def load(self) -> Stack:
        """The full stack (resolved again by `resolve_stack`)."""
        from oxeo_flows.stack import resolve_stack

        return resolve_stack(self.arg)


def view_of(stack: Stack, arg: str | None = None) -> StackView:
    """The `StackView` of a resolved stack."""
    s, a = stack.storage, stack.aws
    described = {
        f"storage.{k}": stack.describe("storage", k) for k in ("bucket", "folder", "ignore")
    }
    return StackView(
        name=stack.name,
        storage=StorageView(
            bucket=s.bucket,
            folder=s.folder,
            ignore=tuple(s.ignore),
            delete=bool(s.delete),
            max_concurrency=int(s.max_concurrency),
            block_name=s.block_name,
        ),
        aws=AwsView(
            profile=a.profile,
            region=a.region,
            endpoint_url=a.endpoint_url,
            assume_role_arn=a.assume_role_arn,
        ),
        described=described,
        arg=arg,
    )


def _stamp(path: Path) -> list[Any]:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    if not path.is_file():
        return [str(path), "not-a-file"]
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return [str(path), "unreadable"]
    return [str(path), st.st_size, st.st_mtime_ns, digest]


def _inputs() -> list[Any]:
    """Everything the resolver's answer depends on, as it is now."""
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith("OXEO_FLOWS_"))
    cwd = Path.cwd().resolve()
    files: list[Any] = []
    explicit = os.environ.get("OXEO_FLOWS_CONFIG")
    if explicit:
        files.append(_stamp(Path(explicit).expanduser()))
    else:
        for directory in (cwd, *cwd.parents):
            stamps = [_stamp(directory / n) for n in _NAMES]
            files.extend(stamps)
            if any(len(s) > 2 for s in stamps):
                break  # the resolver stops at the first directory holding one
    # The stack models and their validators live all over the package: any edit invalidates.
    package = Path(__file__).resolve().parent.parent
    code = []
    for path in sorted(package.rglob("*.py")):
        with contextlib.suppress(OSError):
            st = path.stat()
            code.append([str(path), st.st_size, st.st_mtime_ns])
    return [_CACHE_FORMAT, str(cwd), env, files, code]


def _cache_file(arg: str | None) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(f"{Path.cwd()}\0{arg}".encode()).hexdigest()[:32]
    return base / "oxeo-flows" / "stacks" / f"{key}.json"


def cached_view(arg: str | None) -> StackView:
    """The `StackView` of ``resolve_stack(arg)``, from the cache when nothing changed.

    Raises:
        ConfigError: The stack does not load (never cached).
    """
    # Only a digest of the inputs is stored: the environment values never reach the disk.
    inputs = hashlib.sha256(json.dumps(_inputs()).encode()).hexdigest()
    path = _cache_file(arg)
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["inputs"] == inputs and data["arg"] == arg:
            view = data["view"]
            return StackView(
                name=view["name"],
                storage=StorageView(
                    **{**view["storage"], "ignore": tuple(view["storage"]["ignore"])}
                ),
                aws=AwsView(**view["aws"]),
                described=dict(view["described"]),
                arg=arg,
            )
    from oxeo_flows.stack import resolve_stack

    view = view_of(resolve_stack(arg), arg)
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps({"arg": arg, "inputs": inputs, "view": asdict(view)}))
        tmp.replace(path)
    return view
