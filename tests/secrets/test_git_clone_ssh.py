"""``git_clone_ssh`` end to end: a real sshd on 127.0.0.1, a bare repo, a key from the fake GCP.

Needs Debian's ``openssh-server`` (``apt-get install -y openssh-server``); skips with the
reason when sshd is missing or cannot run here.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oxeo_flows import ConfigError, StorageError
from oxeo_flows.steps import git_clone_ssh
from tests._util import free_port
from tests.secrets._keys import ed25519_keypair
from tests.secrets.conftest import PROJECT

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]


@dataclass
class SshServer:
    port: int
    user: str
    known_hosts: str
    client_key: Path
    repo: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.repo}"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[SshServer]:
    if SSHD is None:
        pytest.skip("sshd not installed (apt-get install -y openssh-server)")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("ssh client / ssh-keygen not installed (apt-get install -y openssh-client)")
    base = Path(tempfile.mkdtemp(prefix="oxeo-sshd-"))
    try:
        host_key, host_pub = ed25519_keypair(base, "host_key")
        client_key, client_pub = ed25519_keypair(base, "client_key")
        authorized = base / "authorized_keys"
        authorized.write_text(client_pub.read_text())
        authorized.chmod(0o600)
        # The repository: one commit on main, in a bare repo served over ssh.
        work = base / "work"
        subprocess.run([*GIT, "init", "-q", "-b", "main", str(work)], check=True)
        (work / "flow.py").write_text("VALUE = 'from-ssh-repo'\n")
        subprocess.run([*GIT, "-C", str(work), "add", "flow.py"], check=True)
        subprocess.run([*GIT, "-C", str(work), "commit", "-q", "-m", "first"], check=True)
        repo = base / "pipelines.git"
        subprocess.run([*GIT, "clone", "-q", "--bare", str(work), str(repo)], check=True)
        port = free_port()
        user = getpass.getuser()
        config = base / "sshd_config"
        config.write_text(
            f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {authorized}
PidFile {base / "sshd.pid"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers {user}
LogLevel ERROR
"""
        )
        if os.geteuid() == 0:
            # Privilege separation directory the Debian service would create.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        check = subprocess.run(
            [SSHD, "-t", "-f", str(config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            pytest.skip(f"sshd cannot run here: {check.stderr.strip()[:300]}")
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if not _wait_for_port(port, proc, time.monotonic() + 15):
                proc.kill()
                err = proc.communicate(timeout=5)[1].decode(errors="replace")
                pytest.skip(f"sshd did not start: {err.strip()[:300]}")
            host_line = " ".join(host_pub.read_text().split()[:2])
            yield SshServer(
                port=port,
                user=user,
                known_hosts=f"[127.0.0.1]:{port} {host_line}\n",
                client_key=client_key,
                repo=repo,
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make tempfile use an empty directory, to see what the step leaves behind."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def test_clone_with_key_from_fake_secret_manager(
    ssh_server: SshServer, fake_sm, gcp_stack, private_tmp: Path, tmp_path: Path
) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "deploy-key", ssh_server.client_key.read_text())
    out = git_clone_ssh(
        ssh_server.url,
        branch="main",
        ssh_key_secret="deploy-key",
        known_hosts=ssh_server.known_hosts,
    )
    assert out == {"directory": "pipelines"}
    assert (tmp_path / "pipelines" / "flow.py").read_text() == "VALUE = 'from-ssh-repo'\n"
    assert fake_sm.calls["AccessSecretVersion"] == 1
    assert list(private_tmp.iterdir()) == []  # the key's directory is gone

    # Running the step again updates the existing clone.
    out = git_clone_ssh(
        ssh_server.url,
        ssh_key_secret="gcp://deploy-key",
        known_hosts=ssh_server.known_hosts,
    )
    assert out == {"directory": "pipelines"}
    assert list(private_tmp.iterdir()) == []


def test_unknown_host_key_fails_and_removes_key(
    ssh_server: SshServer, fake_sm, gcp_stack, private_tmp: Path
) -> None:
    gcp_stack()
    fake_sm.add(PROJECT, "deploy-key", ssh_server.client_key.read_text())
    wrong = (
        ssh_server.known_hosts.split()[0]
        + " ssh-ed25519 "
        + ("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
    )
    with pytest.raises(StorageError, match="Host key verification failed") as info:
        git_clone_ssh(ssh_server.url, ssh_key_secret="deploy-key", known_hosts=wrong, directory="x")
    assert "known_hosts" in str(info.value)
    assert list(private_tmp.iterdir()) == []


def test_unauthorised_key_is_refused_with_hint(
    ssh_server: SshServer, fake_sm, gcp_stack, tmp_path: Path
) -> None:
    gcp_stack()
    other, _ = ed25519_keypair(tmp_path, "other")
    fake_sm.add(PROJECT, "deploy-key", other.read_text())
    with pytest.raises(StorageError, match="deploy key"):
        git_clone_ssh(
            ssh_server.url, ssh_key_secret="deploy-key", known_hosts=ssh_server.known_hosts
        )


def test_rejects_https_urls() -> None:
    with pytest.raises(ConfigError, match="git_clone"):
        git_clone_ssh("https://github.com/oxeo/x.git", ssh_key_secret="k")
    with pytest.raises(ConfigError, match="not an SSH repository URL"):
        git_clone_ssh("/local/path", ssh_key_secret="k")


def test_runs_as_a_prefect_pull_step(
    ssh_server: SshServer,
    fake_sm,
    gcp_stack,
    private_tmp: Path,
    tmp_path: Path,
    prefect_api: str,
) -> None:
    """The step as prefect.yaml names it, run by Prefect's own step runner."""
    import asyncio

    from prefect.deployments.steps.core import run_steps

    gcp_stack()
    fake_sm.add(PROJECT, "deploy-key", ssh_server.client_key.read_text())
    steps = [
        {
            "oxeo_flows.steps.git_clone_ssh": {
                "id": "clone",
                "repository": ssh_server.url,
                "branch": "main",
                "ssh_key_secret": "deploy-key",
                "known_hosts": ssh_server.known_hosts,
                "directory": "code",
            }
        }
    ]
    outputs = asyncio.run(run_steps(steps, print_function=lambda *a, **k: None))
    assert outputs["clone"] == {"directory": "code"}
    assert (tmp_path / "code" / "flow.py").is_file()
    assert list(private_tmp.iterdir()) == []
