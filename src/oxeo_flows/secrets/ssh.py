"""SSH keys from secrets: a private key file that exists only while you need it.

`ssh_key_file` writes the key ``0600`` inside a fresh ``0700`` temporary directory and removes
the directory on exit, also when the body raises. `git_ssh_env` builds on it and yields the
``GIT_SSH_COMMAND`` environment for ``git`` over SSH.

Interruptions: SIGINT raises `KeyboardInterrupt` in the body, so the directory goes as on any
exception. SIGTERM ends a plain Python process without running ``finally`` blocks, so while a
key file exists a SIGTERM handler is in place (installed from the main thread, only over the
default action or chained before a Python handler someone else installed; Prefect's own
handler raises, which is an exception again): it removes the live directories and then lets
the signal do what it did before (the default: the process ends by SIGTERM). Directories
left by a process that was SIGKILLed (nothing can run then) carry its pid in their name
(``oxeo-ssh-PID-...``) and are removed by the next `ssh_key_file` of the same user once that
pid is gone. An ``atexit`` hook covers interpreter exits that skip the ``with`` block.

Host keys: by default OpenSSH checks the server's host key strictly
(``StrictHostKeyChecking=yes``) against ``~/.ssh/known_hosts`` and
``/etc/ssh/ssh_known_hosts``. In a fresh container those are usually empty, so pass the
server's host key lines (``known_hosts=``, e.g. the output of ``ssh-keyscan github.com``
checked against GitHub's published fingerprints), a secret holding them
(``known_hosts_secret=``), or a file (``known_hosts_file=``). ``accept-new`` trusts a host on
first use; ``no`` disables the check and is only for throwaway test servers.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from oxeo_flows.errors import ConfigError
from oxeo_flows.secrets._core import load_secret

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["HostKeyChecking", "git_ssh_env", "ssh_key_file"]

HostKeyChecking = Literal["yes", "accept-new", "no"]
_CHECKING = ("yes", "accept-new", "no")


def _normalise_key(text: str) -> str:
    """OpenSSH needs LF line ends and a final newline; env vars often carry escaped newlines."""
    text = text.replace("\r\n", "\n").strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


_PREFIX = "oxeo-ssh-"
_live: set[Path] = set()
_live_lock = threading.Lock()
_previous_sigterm: Any = None
_atexit_registered = False


def _remove_live() -> None:
    with _live_lock:
        live = list(_live)
        _live.clear()
    for directory in live:
        shutil.rmtree(directory, ignore_errors=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _remove_live()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    # The default action: end the process by the signal, as it would have without us.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_sigterm() -> None:
    global _previous_sigterm  # noqa: PLW0603
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm or current == signal.SIG_IGN or current is None:
        return  # None: a handler set outside Python, which we must not replace
    _previous_sigterm = current if callable(current) else None
    signal.signal(signal.SIGTERM, _on_sigterm)


def _sweep_stale(root: Path) -> None:
    """Remove key directories of this user whose process is gone (it was SIGKILLed)."""
    try:
        entries = list(root.glob(f"{_PREFIX}*-*"))
    except OSError:
        return
    uid = os.getuid()
    for entry in entries:
        pid_text = entry.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            if entry.lstat().st_uid != uid or not entry.is_dir():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


@contextmanager
def _private_dir() -> Iterator[Path]:
    global _atexit_registered  # noqa: PLW0603
    root = Path(tempfile.gettempdir())
    _sweep_stale(root)
    directory = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=root))
    with _live_lock:
        _live.add(directory)
        if not _atexit_registered:
            atexit.register(_remove_live)
            _atexit_registered = True
    _install_sigterm()
    try:
        os.chmod(directory, 0o700)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        with _live_lock:
            _live.discard(directory)


def _check_known_hosts(text: str, label: str) -> None:
    """Each known-hosts line is ``HOSTS KEYTYPE BASE64KEY`` (or a ``@marker`` line)."""
    entries = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for line in entries:
        fields = line.split()
        if fields[0].startswith("@"):
            fields = fields[1:]
        if len(fields) < 3:
            shown = line if len(line) <= 40 else line[:40] + "..."
            msg = (
                f"{label}: the line {shown!r} is not a known-hosts entry (HOST KEYTYPE KEY); "
                "get the lines with `ssh-keyscan HOST`"
            )
            raise ConfigError(msg)
    if not entries:
        msg = f"{label} is empty; give the host keys (`ssh-keyscan HOST`), or leave it out"
        raise ConfigError(msg)


@contextmanager
def ssh_key_file(
    name: str,
    *,
    sources: Sequence[str] | None = None,
    version: str = "latest",
    stack: Stack | str | None = None,
) -> Iterator[Path]:
    """Write an SSH private key held in a secret to a private file, for the ``with`` block only.

    The key is loaded with `load_secret`, written ``0600`` inside a new ``0700`` temporary
    directory, and the directory is removed when the block exits, also on exceptions. Line
    ends are normalised and a final newline added (OpenSSH rejects keys without one);
    a single-line value with escaped newlines (backslash n) is unescaped.

    Args:
        name: Secret name or reference (see `load_secret`).
        sources: Sources to ask instead of the stack's ``secrets.sources``.
        version: Secret version.
        stack: A `Stack`, a stack name, or None for the active stack.

    Yields:
        The path of the key file.

    Example:
        ```python
        import subprocess
        from oxeo_flows import ssh_key_file

        with ssh_key_file("github-deploy-key") as key:
            subprocess.run(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "git@github.com"])
        ```
    """
    secret = load_secret(name, sources=sources, version=version, stack=stack)
    text = _normalise_key(secret.get_secret_value())
    _check_private_key(text, name)
    with _private_dir() as directory:
        path = directory / "id_key"
        _write_private(path, text)
        yield path


def _check_private_key(text: str, name: str) -> None:
    """Refuse a value that is not a private key (ssh would fail later with a vague error)."""
    if "-----BEGIN " in text and "PRIVATE KEY-----" in text:
        return
    first = text.lstrip().split(" ", 1)[0]
    if first.startswith(("ssh-", "ecdsa-", "sk-")):
        what = "an SSH public key"
    elif text.startswith("PuTTY-User-Key-File"):
        what = "a PuTTY key (.ppk)"
    else:
        what = "not a private key"
    msg = (
        f"secret {name!r} is {what}; ssh_key_file needs a private key in OpenSSH or PEM form "
        "(a value starting with '-----BEGIN OPENSSH PRIVATE KEY-----'). Store the private key "
        "file's contents in the secret (convert a .ppk with `puttygen KEY.ppk -O private-openssh`)"
    )
    raise ConfigError(msg)


def ssh_command(
    key: Path,
    *,
    known_hosts_file: Path | None = None,
    strict_host_key_checking: HostKeyChecking = "yes",
) -> str:
    """The ``ssh`` command line for ``GIT_SSH_COMMAND`` using only ``key``.

    Args:
        key: Private key file.
        known_hosts_file: Known-hosts file to use instead of ``~/.ssh/known_hosts``.
        strict_host_key_checking: ``yes`` (default), ``accept-new`` or ``no``.

    Returns:
        A shell-quoted command line.
    """
    if strict_host_key_checking not in _CHECKING:
        msg = (
            f"strict_host_key_checking must be one of {list(_CHECKING)}, "
            f"got {strict_host_key_checking!r}"
        )
        raise ConfigError(msg)
    parts = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"StrictHostKeyChecking={strict_host_key_checking}",
    ]
    if known_hosts_file is not None:
        parts += ["-o", f"UserKnownHostsFile={known_hosts_file}"]
    return " ".join(shlex.quote(p) for p in parts)


@contextmanager
def git_ssh_env(
    name: str,
    *,
    known_hosts: str | None = None,
    known_hosts_secret: str | None = None,
    known_hosts_file: str | os.PathLike[str] | None = None,
    strict_host_key_checking: HostKeyChecking = "yes",
    sources: Sequence[str] | None = None,
    stack: Stack | str | None = None,
) -> Iterator[dict[str, str]]:
    """Environment for running ``git`` over SSH with a deploy key held in a secret.

    Yields ``GIT_SSH_COMMAND`` (``ssh -i KEY -o IdentitiesOnly=yes -o BatchMode=yes
    -o StrictHostKeyChecking=...``) and ``GIT_TERMINAL_PROMPT=0``. The key file and any
    known-hosts file exist only inside the ``with`` block. Merge the result into
    ``os.environ`` for the git process; it contains paths, never the key.

    Args:
        name: Secret holding the private key (see `load_secret`).
        known_hosts: Known-hosts lines for the server (e.g. from ``ssh-keyscan``).
        known_hosts_secret: A secret holding known-hosts lines.
        known_hosts_file: A known-hosts file to use.
        strict_host_key_checking: ``yes`` (default), ``accept-new`` or ``no``.
        sources: Sources to ask instead of the stack's ``secrets.sources``.
        stack: A `Stack`, a stack name, or None for the active stack.

    Yields:
        The environment variables to add.

    Example:
        ```python
        import os, subprocess
        from oxeo_flows import git_ssh_env

        with git_ssh_env("github-deploy-key", known_hosts_secret="github-known-hosts") as env:
            subprocess.run(
                ["git", "clone", "git@github.com:oxeo/pipelines.git"],
                env={**os.environ, **env}, check=True,
            )
        ```
    """
    given = [x for x in (known_hosts, known_hosts_secret, known_hosts_file) if x is not None]
    if len(given) > 1:
        msg = "give at most one of known_hosts, known_hosts_secret and known_hosts_file"
        raise ConfigError(msg)
    if strict_host_key_checking not in _CHECKING:
        ssh_command(Path("key"), strict_host_key_checking=strict_host_key_checking)
    lines = known_hosts
    if known_hosts_secret is not None:
        lines = load_secret(known_hosts_secret, sources=sources, stack=stack).get_secret_value()
    with ssh_key_file(name, sources=sources, stack=stack) as key:
        hosts_file: Path | None = None
        if lines is not None:
            _check_known_hosts(lines, "known_hosts_secret" if known_hosts_secret else "known_hosts")
            hosts_file = key.parent / "known_hosts"
            _write_private(hosts_file, _normalise_key(lines))
        elif known_hosts_file is not None:
            hosts_file = Path(known_hosts_file).expanduser().resolve()
            if not hosts_file.is_file():
                state = "is a directory" if hosts_file.is_dir() else "does not exist"
                msg = (
                    f"known_hosts_file {str(hosts_file)!r} {state}; give a known-hosts file "
                    "(e.g. from `ssh-keyscan github.com > known_hosts`)"
                )
                raise ConfigError(msg)
        yield {
            "GIT_SSH_COMMAND": ssh_command(
                key,
                known_hosts_file=hosts_file,
                strict_host_key_checking=strict_host_key_checking,
            ),
            "GIT_TERMINAL_PROMPT": "0",
        }
