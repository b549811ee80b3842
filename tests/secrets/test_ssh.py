"""``ssh_key_file`` and ``git_ssh_env``: permissions, clean-up, the ssh command line."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from oxeo_flows import ConfigError, git_ssh_env, ssh_key_file

KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def test_key_file_permissions_and_removal(monkeypatch) -> None:
    monkeypatch.setenv("DEPLOY_KEY", KEY)
    with ssh_key_file("deploy-key") as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_text() == KEY + "\n"
        directory = path.parent
    assert not path.exists()
    assert not directory.exists()


def test_key_file_removed_on_exception(monkeypatch) -> None:
    monkeypatch.setenv("DEPLOY_KEY", KEY)
    seen: list[Path] = []

    def body() -> None:
        with ssh_key_file("deploy-key") as path:
            seen.append(path)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert seen
    assert not seen[0].exists()
    assert not seen[0].parent.exists()


def test_key_normalisation(monkeypatch) -> None:
    monkeypatch.setenv("ESCAPED_KEY", KEY.replace("\n", "\\n"))
    with ssh_key_file("escaped-key") as path:
        assert path.read_text() == KEY + "\n"
    monkeypatch.setenv("CRLF_KEY", KEY.replace("\n", "\r\n") + "\r\n")
    with ssh_key_file("crlf-key") as path:
        assert path.read_text() == KEY + "\n"


def test_git_ssh_env(monkeypatch) -> None:
    monkeypatch.setenv("DEPLOY_KEY", KEY)
    with git_ssh_env("deploy-key", known_hosts="github.com ssh-ed25519 AAAAtest") as env:
        command = shlex.split(env["GIT_SSH_COMMAND"])
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        key = Path(command[command.index("-i") + 1])
        assert key.read_text() == KEY + "\n"
        assert "IdentitiesOnly=yes" in command
        assert "BatchMode=yes" in command
        assert "StrictHostKeyChecking=yes" in command
        hosts = [c for c in command if c.startswith("UserKnownHostsFile=")]
        hosts_file = Path(hosts[0].split("=", 1)[1])
        assert hosts_file.read_text() == "github.com ssh-ed25519 AAAAtest\n"
        assert stat.S_IMODE(hosts_file.stat().st_mode) == 0o600
        assert KEY.splitlines()[1] not in repr(env)
    assert not key.exists()
    assert not hosts_file.exists()


def test_git_ssh_env_defaults_and_validation(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DEPLOY_KEY", KEY)
    with git_ssh_env("deploy-key") as env:
        assert "UserKnownHostsFile" not in env["GIT_SSH_COMMAND"]
    bad_calls = [
        ({"known_hosts": "a", "known_hosts_file": "b"}, "at most one"),
        ({"strict_host_key_checking": "maybe"}, "strict_host_key_checking"),
        ({"known_hosts_file": str(tmp_path / "missing")}, "does not exist"),
    ]
    for kwargs, match in bad_calls:
        manager = git_ssh_env("deploy-key", **kwargs)
        with pytest.raises(ConfigError, match=match):
            manager.__enter__()
    hosts = tmp_path / "known"
    hosts.write_text("h ssh-ed25519 AAAA\n")
    with git_ssh_env(
        "deploy-key", known_hosts_file=hosts, strict_host_key_checking="accept-new"
    ) as env:
        assert f"UserKnownHostsFile={hosts}" in env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=accept-new" in env["GIT_SSH_COMMAND"]
