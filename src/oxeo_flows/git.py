"""The ``git_clone_ssh`` prefect.yaml pull step: clone a private repository over SSH.

Prefect's own ``git_clone`` step authenticates HTTPS with a token. This step clones over SSH
with a deploy key loaded from any secret source (`oxeo_flows.load_secret`), and the key exists
on disk only while git runs::

    pull:
      - oxeo_flows.steps.git_clone_ssh:
          id: clone
          repository: git@github.com:oxeo/pipelines.git
          branch: main
          ssh_key_secret: github-deploy-key          # or gcp://oxeo-main/github-deploy-key
          known_hosts_secret: github-known-hosts     # lines from `ssh-keyscan github.com`
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from oxeo_flows._redact import redact
from oxeo_flows.errors import ConfigError, StorageError
from oxeo_flows.secrets.ssh import HostKeyChecking, git_ssh_env

if TYPE_CHECKING:
    from oxeo_flows.stack import Stack

__all__ = ["git_clone_ssh"]

logger = logging.getLogger("oxeo_flows.git")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:(?!//).+")
_HINTS = (
    (
        "Permission denied (publickey",
        "the server refused the key: add its public half as a deploy key of the repository",
    ),
    (
        "Host key verification failed",
        "the server's host key is not known: pass known_hosts / known_hosts_secret (lines "
        "from `ssh-keyscan HOST`, checked against the host's published fingerprints)",
    ),
    ("Could not resolve hostname", "the host name does not resolve from here"),
    ("Connection refused", "nothing listens on that host and port"),
    ("not found", "check the repository path and the branch name"),
    ("invalid format", "the secret does not hold an OpenSSH/PEM private key"),
)


def _default_directory(repository: str) -> str:
    tail = repository.rstrip("/").split("/")[-1].split(":")[-1]
    return tail.removesuffix(".git") or "repository"


def _run(args: list[str], env: dict[str, str], timeout: float, what: str) -> None:
    try:
        subprocess.run(args, env=env, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        msg = f"git_clone_ssh: {what} did not finish within {timeout:g} s; raise timeout="
        raise StorageError(msg) from None
    except subprocess.CalledProcessError as exc:
        stderr = redact((exc.stderr or "").strip())
        hints = [hint for needle, hint in _HINTS if needle in stderr]
        tail = "\n".join(stderr.splitlines()[-8:])
        msg = f"git_clone_ssh: {what} failed (exit {exc.returncode}):\n{tail}" + (
            f"\nHint: {'; '.join(hints)}." if hints else ""
        )
        raise StorageError(msg) from None


def git_clone_ssh(
    repository: str,
    branch: str | None = None,
    *,
    ssh_key_secret: str,
    commit_sha: str | None = None,
    directory: str | None = None,
    include_submodules: bool = False,
    depth: int | None = 1,
    known_hosts: str | None = None,
    known_hosts_secret: str | None = None,
    known_hosts_file: str | None = None,
    strict_host_key_checking: HostKeyChecking = "yes",
    sources: Sequence[str] | None = None,
    stack: Stack | str | None = None,
    timeout: float = 600.0,
) -> dict[str, str]:
    """Clone (or update) a private git repository over SSH with a deploy key from a secret.

    The key is loaded with `load_secret` (any source: GCP, AWS, Prefect, env), written
    ``0600`` in a private temporary directory for the duration of the git commands, and
    removed afterwards, also on failure. Host keys are checked strictly unless told otherwise.
    If the target directory already holds a clone, it is fetched and reset to the branch.

    Args:
        repository: SSH URL, ``git@host:org/repo.git`` or ``ssh://git@host[:port]/org/repo.git``.
        branch: Branch or tag to check out (default: the remote's default branch).
        ssh_key_secret: Secret name or reference holding the private key.
        commit_sha: Check out this exact commit after cloning.
        directory: Where to clone (default: the repository name, in the working directory).
        include_submodules: Also clone submodules (over the same key).
        depth: Shallow-clone depth; None for the full history.
        known_hosts: Known-hosts lines for the server.
        known_hosts_secret: A secret holding known-hosts lines.
        known_hosts_file: A known-hosts file.
        strict_host_key_checking: ``yes`` (default), ``accept-new`` or ``no``.
        sources: Secret sources to ask instead of the stack's ``secrets.sources``.
        stack: A `Stack`, a stack name, or None for the active stack.
        timeout: Deadline in seconds of each git command.

    Returns:
        ``{"directory": <path of the clone>}``, like Prefect's ``git_clone`` step, so later
        steps can use ``{{ clone.directory }}``.

    Raises:
        ConfigError: The repository is not an SSH URL, or arguments conflict.
        StorageError: git failed; the message has git's last lines and a hint.
        SecretError: The key could not be loaded.
    """
    if repository.startswith(("http://", "https://")):
        msg = (
            f"git_clone_ssh clones over SSH, but {repository!r} is an HTTPS URL; use "
            "prefect.deployments.steps.git_clone with an access token for HTTPS"
        )
        raise ConfigError(msg)
    if not (repository.startswith("ssh://") or _SCP_LIKE.match(repository)):
        msg = (
            f"{repository!r} is not an SSH repository URL; use git@HOST:ORG/REPO.git or "
            "ssh://git@HOST[:PORT]/ORG/REPO.git"
        )
        raise ConfigError(msg)
    if depth is not None and depth < 1:
        msg = f"depth must be a positive number of commits or None, got {depth}"
        raise ConfigError(msg)
    git = shutil.which("git")
    if git is None:
        msg = "git_clone_ssh needs the git executable on PATH (e.g. apt-get install git)"
        raise StorageError(msg)
    target = directory or _default_directory(repository)
    dest = Path(target)
    with git_ssh_env(
        ssh_key_secret,
        known_hosts=known_hosts,
        known_hosts_secret=known_hosts_secret,
        known_hosts_file=known_hosts_file,
        strict_host_key_checking=strict_host_key_checking,
        sources=sources,
        stack=stack,
    ) as ssh_env:
        env = {**os.environ, **ssh_env}
        depth_args = [f"--depth={depth}"] if depth is not None else []
        if (dest / ".git").exists():
            logger.info("Updating %s from %s", dest, repository)
            ref = branch or "HEAD"
            _run(
                [git, "-C", str(dest), "fetch", *depth_args, repository, ref], env, timeout, "fetch"
            )
            _run([git, "-C", str(dest), "reset", "--hard", "FETCH_HEAD"], env, timeout, "reset")
        else:
            if dest.exists() and any(dest.iterdir()):
                msg = (
                    f"git_clone_ssh: {str(dest)!r} exists and is not a git clone; remove it or "
                    "pass another directory="
                )
                raise StorageError(msg)
            logger.info("Cloning %s into %s", repository, dest)
            args = [git, "clone", *depth_args]
            if branch:
                args += ["--branch", branch]
            if include_submodules:
                args += ["--recurse-submodules"]
                if depth is not None:
                    args += ["--shallow-submodules"]
            _run([*args, "--", repository, str(dest)], env, timeout, "clone")
        if commit_sha:
            _run(
                [git, "-C", str(dest), "fetch", *depth_args, "origin", commit_sha],
                env,
                timeout,
                f"fetch of commit {commit_sha}",
            )
            _run(
                [git, "-C", str(dest), "checkout", "--force", commit_sha],
                env,
                timeout,
                f"checkout of commit {commit_sha}",
            )
    return {"directory": str(dest)}
