"""Every fenced code block of README.md, docs/ and examples/*/README.md, run as a test.

Each block is one test, with the id ``page:line`` of its opening fence. Blocks run against the
local parts only: the session's Prefect test server (``PREFECT_API_URL``), moto
(``AWS_ENDPOINT_URL``), all on 127.0.0.1. Each page gets its own temporary project directory
(for ``examples/<name>/README.md``: the files git has of ``examples/<name>``, as in a fresh
clone), which is the working directory of its blocks, and whose ``pyproject.toml`` holds the
page's stack. What a page creates on the Prefect server is deleted when the next page starts.

How each language runs:

- ``python``: executed in-process, in a fresh namespace (or the previous block's, with
  ``continue``), with the page's project as working directory and on ``sys.path``.
- ``toml``: parsed; a block that declares ``[tool.oxeo-flows...]`` (or ``[stacks...]``) is
  loaded with ``load_stack`` for every stack it defines, and each stack's Dask runner, work
  pools' job defaults and S3 block are built (offline).
- ``bash`` / ``shell`` / ``sh`` / ``console``: every ``oxeo-flows ...`` line runs through typer's
  CliRunner and must exit 0, and every ``python <file>.py ...`` line whose file exists in the
  page's project runs in-process (the example READMEs' steps). In a console block, a following
  ``$ echo $?`` and its number give the expected exit code. Other lines (pip, gcloud, docker,
  ``prefect worker start``...) are not run; a block with no runnable line must say why, with a
  ``skip`` directive.
- ``yaml``: parsed. ``text``, ``hcl``, ``dockerfile`` and blocks without a language: not run.

Directives are HTML comments on the line(s) just above the fence (no blank line between),
invisible in the rendered docs. Several may be stacked. A multi-line comment's lines after the
first are its body.

- ``<!-- doctest: skip REASON -->``: not run; the reason is required and shown by ``-ra``.
- ``<!-- doctest: covered-by tests/x.py::test_name [NOTE] -->``: not run here because that test
  runs it (the test must exist); the note says what else the block needs.
- ``<!-- doctest: stack -->`` above a toml block: it is (part of) the page's stack, written to
  the page project's ``pyproject.toml`` before the block runs. With a body (TOML, with or
  without the ``tool.oxeo-flows`` prefix), above any block: that hidden TOML is added to the
  page's stack (use it to point a snippet at a stack the page does not show).
- ``<!-- doctest: combine -->`` above a toml block: checked merged over the page's stack (for
  fragments that only make sense in a bigger file).
- ``<!-- doctest: load-only REASON -->`` above a toml block: only ``load_stack``, no building.
- ``<!-- doctest: continue -->`` above a python block: same namespace as the previous one.
- ``<!-- doctest: expect-exit N -->`` above a shell block: its commands exit with N.
- ``<!-- doctest: env KEY=VALUE ... -->``: environment for this block and the page's later ones.
- ``<!-- doctest: setup -->`` with a python body: run before the block, in its namespace.
- ``<!-- doctest: file PATH -->`` with a body: written to PATH in the page project.
- ``<!-- doctest: save PATH -->``: this block's text is also written to PATH in the project.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docs_support import ROOT, Block, collect
from tests.docs_support.run import (
    check_stacks,
    commands,
    config_of,
    merge,
    parse_toml,
    run_command,
    runnable,
    split,
)

BLOCKS = collect()
SHELLS = {"bash", "sh", "shell", "console"}
NOT_RUN = {"text", "output", "hcl", "dockerfile", "ini", "json", "diff"}


@dataclass
class Page:
    """What the blocks of one page share."""

    dir: Path
    checks: Path
    stack: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, Any] | None = None
    fresh: bool = True
    done: set[int] = field(default_factory=set)


_PAGES: dict[str, Page] = {}
_TALLY: dict[str, Counter[str]] = defaultdict(Counter)


def _page(block: Block, factory: pytest.TempPathFactory) -> Page:
    page = _PAGES.get(block.page)
    if page is None:
        slug = re.sub(r"\W+", "-", block.page)
        base = factory.mktemp(slug)
        parts = Path(block.page).parts
        stack: dict[str, Any] = {}
        if len(parts) == 3 and parts[0] == "examples":
            directory = base / parts[1]
            _fresh_clone(ROOT / "examples" / parts[1], directory)
            stack = config_of(parse_toml((directory / "pyproject.toml").read_text())) or {}
        else:
            directory = base / "project"
            directory.mkdir()
            (directory / "pyproject.toml").write_text(
                '[project]\nname = "docs-page"\nversion = "0"\n', encoding="utf-8"
            )
        for other in list(_PAGES):
            _forget_page(other)
        _clean_slate()
        page = _PAGES[block.page] = Page(dir=directory, checks=base / "checks", stack=stack)
        _SNAPSHOT.update(_server_objects())
    return page


def _clean_slate() -> None:
    """What a reader of a page starts from: no project modules, no deployments left by others.

    Other test modules share the session's Prefect server and may leave a deployment of the
    same flow/name (``extract/extract``) on another pool, or a ``flows`` package imported from
    their own directory; a page must not depend on them.
    """
    from prefect.client.orchestration import get_client

    for name in [m for m in sys.modules if m == "flows" or m.startswith("flows.")]:
        del sys.modules[name]
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            client.delete_deployment(deployment.id)


def _fresh_clone(source: Path, target: Path) -> None:
    """Copy what a fresh clone has of ``source``: its files tracked by git (all, without git)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "."], cwd=source, capture_output=True, check=True
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return
    for name in filter(None, listed.split("\0")):
        if not (source / name).is_file():  # deleted in the work tree, not yet in git
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)


_SNAPSHOT: dict[str, set[str]] = {}


def _server_objects() -> dict[str, set[str]]:
    """What is on the session's Prefect server now (so a page can remove what it added)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {
            "pools": {p.name for p in client.read_work_pools()},
            "deployments": {str(d.id) for d in client.read_deployments()},
            "blocks": {str(b.id) for b in client.read_block_documents()},
            "variables": {v.name for v in client.read_variables()},
        }


def _forget_page(name: str) -> None:
    """Delete what a page's blocks created on the shared server: other tests see it as found."""
    _PAGES.pop(name, None)
    if _SNAPSHOT:
        _delete_new(dict(_SNAPSHOT))
        _SNAPSHOT.clear()


def _delete_new(before: dict[str, set[str]]) -> None:
    """Delete what is on the server now and was not in ``before``."""
    from prefect.client.orchestration import get_client

    now = _server_objects()
    with get_client(sync_client=True) as client:
        for deployment in now["deployments"] - before["deployments"]:
            client.delete_deployment(deployment)
        for pool in now["pools"] - before["pools"]:
            client.delete_work_pool(pool)
        for block in now["blocks"] - before["blocks"]:
            client.delete_block_document(block)
        for variable in now["variables"] - before["variables"]:
            client.delete_variable_by_name(variable)


def _prepare(block: Block, page: Page) -> None:
    """What a block leaves for the page's next blocks: env, files, stack."""
    page.done.add(block.line)
    for directive in block.all("env"):
        for pair in directive.arg.split():
            key, _, value = pair.partition("=")
            page.env[key] = value
    for directive in block.all("file"):
        target = page.dir / directive.arg
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(directive.body + "\n", encoding="utf-8")
    if (save := block.get("save")) is not None:
        target = page.dir / save.arg
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body, encoding="utf-8")
    stack_directive = block.get("stack")
    if stack_directive is not None:
        _add_stack(page, stack_directive.body or block.body)


def _add_stack(page: Page, body: str) -> None:
    from tests.docs_support.run import as_pyproject

    table = parse_toml(body)
    config = config_of(table)
    if config is None:  # a body written without the prefix
        config = table
    page.stack = merge(page.stack, config)
    (page.dir / "pyproject.toml").write_text(as_pyproject(page.stack), encoding="utf-8")


def _covered(nodeid: str) -> None:
    path, _, name = nodeid.partition("::")
    source = ROOT / path
    assert source.is_file(), f"covered-by names a missing file: {path}"
    assert re.search(rf"^(async )?def {re.escape(name)}\(", source.read_text(), re.M), (
        f"covered-by names a missing test: {nodeid}"
    )


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest, prefect_server: str) -> Any:
    """Print how many blocks of each page ran, and how many were skipped (and why, with -ra)."""
    yield
    for name in list(_PAGES):
        _forget_page(name)
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not _TALLY:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("docs code blocks, per page: run / skipped (reasons: -ra) / not code")
        for page, tally in sorted(_TALLY.items()):
            run, skipped, text = tally["ran"], tally["skipped"], tally["text"]
            reporter.write_line(f"  {page}: {run} run, {skipped} skipped, {text} not code")


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block(
    block: Block,
    prefect_api: str,
    moto_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = _page(block, tmp_path_factory)
    monkeypatch.chdir(page.dir)
    monkeypatch.syspath_prepend(str(page.dir))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    if page.fresh:  # moto starts empty for each page
        req = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass
        page.fresh = False
    # Blocks of this page that did not run before this one (say, with -k): replay what they
    # leave behind for the next ones (stack, env, files, setup), without running them.
    earlier = [b for b in BLOCKS if b.page == block.page and b.line < block.line]
    replay = [b for b in earlier if b.line not in page.done]
    for each in [*replay, block]:
        _prepare(each, page)
    for key, value in page.env.items():
        monkeypatch.setenv(key, value)
    for each in replay:
        if each.get("skip") is None and each.get("covered-by") is None:
            for setup in each.all("setup"):
                exec(compile(setup.body, f"{each.id} (setup)", "exec"), {})

    skip = block.get("skip")
    covered = block.get("covered-by")
    if covered is not None:
        nodeid, _, note = covered.arg.partition(" ")
        _covered(nodeid)
        _TALLY[block.page]["skipped"] += 1
        pytest.skip(f"covered by {nodeid} {note}".strip())
    if skip is not None:
        assert skip.arg, f"{block.id}: a skip directive must give its reason"
        _TALLY[block.page]["skipped"] += 1
        pytest.skip(skip.arg)

    modules = set(sys.modules)
    try:
        if block.lang != "python":
            for setup in block.all("setup"):
                exec(compile(setup.body, f"{block.id} (setup)", "exec"), {})
        _run(block, page)
    finally:
        # Modules imported from the page's project (flows.*) must not leak into the next page.
        for name in set(sys.modules) - modules:
            module = sys.modules.get(name)
            where = getattr(module, "__file__", None) or ""
            if where.startswith(str(page.dir)):
                del sys.modules[name]


def _forget_project_modules(page: Page) -> None:
    """Forget modules named like the page project's packages but imported from elsewhere.

    Another test's repository may have left ``flows`` in ``sys.modules``; the page's own files
    are what its reader imports.
    """
    import importlib

    mine = {p.name.removesuffix(".py") for p in page.dir.iterdir()}
    for name in list(sys.modules):
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None) or ""
        if name.split(".", 1)[0] in mine and not where.startswith(str(page.dir)):
            del sys.modules[name]
    importlib.invalidate_caches()


def _run(block: Block, page: Page) -> None:
    lang = block.lang
    if lang == "python":
        _TALLY[block.page]["ran"] += 1
        _forget_project_modules(page)
        _run_python(block, page)
    elif lang == "toml":
        _TALLY[block.page]["ran"] += 1
        _run_toml(block, page)
    elif lang in SHELLS:
        _run_shell(block, page)
        _TALLY[block.page]["ran"] += 1
    elif lang in ("yaml", "yml"):
        _TALLY[block.page]["ran"] += 1
        yaml.safe_load(block.body)
    elif lang in NOT_RUN:
        _TALLY[block.page]["text"] += 1
    else:
        pytest.fail(f"{block.id}: no runner for language {lang!r}; add one or a skip directive")


def _run_python(block: Block, page: Page) -> None:
    if block.get("continue") is not None:
        assert page.namespace is not None, f"{block.id}: continue, but no python block before"
        namespace = page.namespace
    else:
        namespace = {"__name__": "__docs__", "__file__": str(page.dir / "snippet.py")}
    page.namespace = namespace
    for setup in block.all("setup"):
        exec(compile(setup.body, f"{block.id} (setup)", "exec"), namespace)
    exec(compile(block.body, block.id, "exec"), namespace)


def _run_toml(block: Block, page: Page) -> None:
    table = parse_toml(block.body)
    config = config_of(table)
    if config is None:
        return
    stack = block.get("stack")
    if block.get("combine") is not None or (stack is not None and not stack.body):
        config = merge(page.stack, config)
    load_only = block.get("load-only")
    if load_only is not None:
        assert load_only.arg, f"{block.id}: load-only must give its reason"
    check_stacks(config, page.checks / str(block.line), build=load_only is None)


def _export(text: str) -> dict[str, str] | None:
    """``export KEY=VALUE``: kept for the page's later commands, unless it is a placeholder
    (``<...>``, ``$VAR``). ``PREFECT_API_URL`` is never set (the blocks always use the test
    server); exporting it means "another server", so what the page created so far is removed."""
    if not text.startswith("export "):
        return None
    env, words, _ = split(text[len("export ") :])
    if words or not env:
        return None
    keep = {k: v for k, v in env.items() if "<" not in v and "$" not in v}
    if "PREFECT_API_URL" in env:
        keep["PREFECT_API_URL"] = ""  # a marker: the caller never sets it
    return keep


def _run_shell(block: Block, page: Page) -> None:
    expect_all = block.get("expect-exit")
    ran = []
    for command in commands(block.body, block.lang):
        exported = _export(command.text)
        if exported is not None and "PREFECT_API_URL" in exported:
            # The page switches to another Prefect server: start from an empty one again.
            _delete_new(dict(_SNAPSHOT))
            exported.pop("PREFECT_API_URL")
        if exported is not None:
            page.env.update(exported)
            os.environ.update(exported)
            continue
        if runnable(command.text, page.dir) is None:
            continue
        expected = command.expect
        if expected is None:
            expected = int(expect_all.arg) if expect_all is not None else 0
        code, output = run_command(command.text, page.dir)
        assert code == expected, (
            f"{block.id}: `{command.text}` exited {code}, the page says {expected}:\n{output}"
        )
        ran.append(command.text)
    assert ran, (
        f"{block.id}: no line of this block runs here (only `oxeo-flows ...` and the project's "
        "`python <file>.py` lines do): add `<!-- doctest: skip REASON -->` above it"
    )


# ----------------------------------------------------------------------------- the collector itself


def test_directives_are_read_from_the_lines_above_the_fence(tmp_path: Path) -> None:
    from tests.docs_support import parse

    (tmp_path / "page.md").write_text(
        "Text.\n\n"
        "<!-- doctest: env A=1 B=2 -->\n"
        "<!-- doctest: stack\n"
        "[stacks.prod]\n"
        'runner = "process"\n'
        "-->\n"
        "```python\nprint(1)\n```\n\n"
        "1. A step:\n\n"
        "   <!-- doctest: skip (a reason) -->\n"
        "   ```bash\n   gcloud x\n   ```\n\n"
        "<!-- doctest: continue -->\n\n"
        "```\nplain\n```\n",
        encoding="utf-8",
    )
    first, second, third = parse(tmp_path / "page.md", tmp_path)
    assert (first.id, first.lang) == ("page.md:8", "python")
    assert [(d.name, d.arg) for d in first.directives] == [("env", "A=1 B=2"), ("stack", "")]
    assert first.get("stack") is not None
    assert first.get("stack").body == '[stacks.prod]\nrunner = "process"'  # type: ignore[union-attr]
    assert (second.lang, second.body, second.get("skip").arg) == (  # type: ignore[union-attr]
        "bash",
        "gcloud x\n",
        "(a reason)",
    )
    assert (third.lang, third.directives) == ("text", [])  # a blank line detaches a directive


def test_unknown_directive_is_an_error(tmp_path: Path) -> None:
    from tests.docs_support import parse

    (tmp_path / "page.md").write_text("<!-- doctest: skipp x -->\n```bash\nx\n```\n")
    with pytest.raises(ValueError, match="unknown doctest directive 'skipp'"):
        parse(tmp_path / "page.md", tmp_path)


def test_shell_commands_and_expected_exit_codes() -> None:
    console = "$ oxeo-flows apply --check \\\n    --json\noutput\n$ echo $?\n2\n$ ls\n"
    assert [(c.text, c.expect) for c in commands(console, "console")] == [
        ("oxeo-flows apply --check --json", 2),
        ("ls", None),
    ]
    bash = "# a comment\nexport X=1\nOXEO_FLOWS_STACK=prod oxeo-flows secrets check  # why\n"
    assert [c.text for c in commands(bash, "bash")] == [
        "export X=1",
        "OXEO_FLOWS_STACK=prod oxeo-flows secrets check  # why",
    ]
    assert split("OXEO_FLOWS_STACK=prod oxeo-flows secrets get x --reveal > pat.txt") == (
        {"OXEO_FLOWS_STACK": "prod"},
        ["oxeo-flows", "secrets", "get", "x", "--reveal"],
        "pat.txt",
    )
    assert _export("export PREFECT_API_URL=http://<server>:4200/api") == {"PREFECT_API_URL": ""}
    assert _export("export TOKEN=$SECRET") == {}


def test_continue_and_expect_exit_directives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.docs_support import parse

    (tmp_path / "page.md").write_text(
        "```python\nx = 41\n```\n\n"
        "<!-- doctest: continue -->\n```python\nx += 1\n```\n\n"
        "<!-- doctest: expect-exit 1 -->\n```bash\noxeo-flows stack show -s nope\n```\n\n"
        "```bash\noxeo-flows stack show -s nope\n```\n",
        encoding="utf-8",
    )
    first, second, fails, unexpected = parse(tmp_path / "page.md", tmp_path)
    page = Page(dir=tmp_path, checks=tmp_path / "checks")
    monkeypatch.chdir(tmp_path)
    _run_python(first, page)
    _run_python(second, page)
    assert page.namespace is not None
    assert page.namespace["x"] == 42
    _run_shell(fails, page)  # "Unknown stack 'nope'": exit 1, as the directive says
    with pytest.raises(AssertionError, match="exited 1, the page says 0"):
        _run_shell(unexpected, page)
