"""How each kind of block runs: TOML stacks, shell commands, scripts of the examples."""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------- TOML


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, tables merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    msg = f"cannot write {value!r} as TOML"
    raise TypeError(msg)


def dump_toml(table: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """A small TOML writer for the tables the docs use (scalars, lists, nested tables)."""
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    out = []
    if scalars or not tables:
        if prefix:
            out.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars]
        out.append("")
    for key, value in tables:
        out.append(dump_toml(value, (*prefix, key)))
    return "\n".join(out)


def config_of(table: Mapping[str, Any]) -> dict[str, Any] | None:
    """The oxeo-flows configuration a parsed TOML block declares, in oxeo-flows.toml form."""
    tool = table.get("tool")
    if isinstance(tool, Mapping) and "oxeo-flows" in tool:
        return dict(tool["oxeo-flows"])
    if "stacks" in table or "default-stack" in table:
        return dict(table)
    return None


def as_pyproject(config: Mapping[str, Any]) -> str:
    """A pyproject.toml holding ``config`` as its ``[tool.oxeo-flows]`` table."""
    project = '[project]\nname = "docs-page"\nversion = "0"\n\n'
    return project + dump_toml({"tool": {"oxeo-flows": dict(config)}})


def check_stacks(config: Mapping[str, Any], directory: Path, *, build: bool) -> list[str]:
    """Load every stack ``config`` defines (and, with ``build``, what each one declares).

    Building means: the Dask task runner, every work pool's job defaults (what ``deploy`` and
    ``apply`` write, through the pool-kind registry) and the S3 storage block, all offline.

    Returns:
        One line per stack checked.
    """
    from oxeo_flows import dask_runner, load_stack
    from oxeo_flows.pools.kinds import pool_defaults, pool_target
    from oxeo_flows.storage import s3_bucket

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(as_pyproject(config), encoding="utf-8")
    names = list(config.get("stacks", {})) or [None]
    done = []
    for name in names:
        stack = load_stack(name, project_dir=directory)
        what = ["loaded"]
        if build:
            dask_runner(stack=stack)
            pools = {pool_target(stack)[0], *stack.pools}
            for pool in sorted(pools):
                pool_defaults(stack, pool, block_ids=lambda slug, block: "0" * 32)
            what.append(f"dask {stack.dask.backend}, pools {', '.join(sorted(pools))}")
            if stack.storage.bucket:
                s3_bucket(stack=stack)
                what.append("s3 block")
        done.append(f"stack {stack.name}: {'; '.join(what)}")
    return done


# ----------------------------------------------------------------------------- shell


@dataclass
class Command:
    """One command line of a shell block, with the exit code the page says it ends with."""

    text: str
    expect: int | None = None


def commands(body: str, lang: str) -> list[Command]:
    """The commands of a bash/shell block (every line) or a console block (``$`` lines).

    In a console block, ``$ echo $?`` followed by a number sets the previous command's
    expected exit code.
    """
    lines = body.splitlines()
    found: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        i += 1
        if lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1].rstrip() + " " + lines[i].strip()
            i += 1
        if lang == "console" and line.strip() == "echo $?" and found:
            if i < len(lines) and lines[i].strip().isdigit():
                found[-1].expect = int(lines[i].strip())
            continue
        found.append(Command(line.strip()))
    return found


def split(text: str) -> tuple[dict[str, str], list[str], str | None]:
    """``VAR=value ... program args > file`` as (env, argv, redirect target)."""
    words = shlex.split(text, comments=True)
    env: dict[str, str] = {}
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    redirect = None
    if ">" in words:
        at = words.index(">")
        redirect = words[at + 1]
        words = words[:at]
    return env, words, redirect


def runnable(text: str, cwd: Path) -> str | None:
    """What runs a command line here: ``"cli"`` (oxeo-flows), ``"script"``, or None."""
    try:
        _, argv, _ = split(text)
    except ValueError:
        return None
    if not argv or any(w in ("|", "&&", ";") for w in argv):
        return None
    if argv[0] == "oxeo-flows":
        return "cli"
    if argv[0] in ("python", "python3") and len(argv) > 1 and argv[1].endswith(".py"):
        return "script" if (cwd / argv[1]).is_file() else None
    return None


@contextlib.contextmanager
def _environ(extra: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_command(text: str, cwd: Path) -> tuple[int, str]:
    """Run one ``oxeo-flows ...`` (typer's CliRunner) or ``python script.py ...`` (in-process).

    Returns:
        ``(exit code, output)``.
    """
    env, argv, redirect = split(text)
    kind = runnable(text, cwd)
    if kind == "cli":
        from typer.testing import CliRunner

        from oxeo_flows.cli import app

        with _environ(env):
            result = CliRunner().invoke(app, argv[1:], catch_exceptions=True)
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            output += "".join(traceback.format_exception(result.exception))
        code = result.exit_code
    elif kind == "script":
        script = cwd / argv[1]
        buffer = io.StringIO()
        saved_argv, saved_path = sys.argv, list(sys.path)
        sys.argv = [str(script), *argv[2:]]
        sys.path.insert(0, str(script.parent))
        code = 0
        try:
            with _environ(env), contextlib.redirect_stdout(buffer):
                runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
        output = buffer.getvalue()
    else:  # pragma: no cover - callers check runnable() first
        msg = f"not runnable here: {text}"
        raise ValueError(msg)
    if redirect is not None:
        (cwd / redirect).write_text(output, encoding="utf-8")
    return code, output


def parse_toml(body: str) -> dict[str, Any]:
    """The block parsed with tomllib."""
    return tomllib.loads(body)
