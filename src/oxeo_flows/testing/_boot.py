"""Boot an emulated VM: parse the cloud-init dask-cloudprovider renders, run its container.

A VM's user-data is a ``#cloud-config`` document whose ``runcmd`` installs Docker (and GPU
drivers), then runs ``docker run --net=host -e K="V" ... IMAGE COMMAND`` and, with
auto-shutdown, ``shutdown -h now``. Booting here means: every bootstrap step is logged to the
serial console and skipped; the ``-e`` variables (TLS material included) and a leading
``env K=V`` of the command become the process environment; the image is ignored (the current
virtualenv is the image); the command runs as its own process group, bound to the VM's
loopback address (``--host`` for ``dask scheduler``, the spec's ``host`` for
``distributed.cli.dask_spec``). Its stdout and stderr are appended to the serial console.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from oxeo_flows.testing._env import process_env

__all__ = [
    "BootPlan",
    "Container",
    "Machine",
    "MachineHost",
    "SilentListener",
    "bind_command",
    "parse_user_data",
]

#: ``docker run`` options that take a separate value.
_VALUE_OPTIONS = frozenset(
    {
        "-e",
        "--env",
        "-v",
        "--volume",
        "-p",
        "--publish",
        "--name",
        "--shm-size",
        "-w",
        "--workdir",
        "--entrypoint",
        "-u",
        "--user",
        "--network",
        "--gpus",
        "--mount",
        "-l",
        "--label",
        "--runtime",
        "--ipc",
    }
)


@dataclass
class BootPlan:
    """What a VM's user-data asks for."""

    bootstrap: list[str] = field(default_factory=list)
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    shutdown: bool = False


def _split_env(value: str) -> tuple[str, str]:
    key, _, val = value.partition("=")
    return key, val


def parse_user_data(user_data: str | bytes) -> BootPlan:
    """Parse a dask-cloudprovider cloud-init document (or a plain shell script).

    Args:
        user_data: The ``user-data`` metadata value / EC2 UserData, decoded from base64;
            gzip-compressed bytes are unpacked first, as cloud-init does.

    Returns:
        The bootstrap steps, the container's image, env and command, and whether the VM
        shuts down when the container exits.
    """
    import yaml  # type: ignore[import-untyped]

    if isinstance(user_data, bytes):
        if user_data[:2] == b"\x1f\x8b":
            user_data = gzip.decompress(user_data)
        user_data = user_data.decode("utf-8", "replace")
    plan = BootPlan()
    steps: list[str] = []
    if user_data.lstrip().startswith("#cloud-config"):
        doc = yaml.safe_load(user_data) or {}
        for key in ("packages", "write_files", "groups", "system_info"):
            if doc.get(key):
                steps.append(f"cloud-init {key}: {json.dumps(doc[key], default=str)[:200]}")
        steps.extend(str(cmd) for cmd in doc.get("runcmd") or [])
    else:
        steps = [line for line in user_data.splitlines() if line.strip()]
    for step in steps:
        stripped = step.strip()
        if stripped.startswith("docker run"):
            _parse_docker_run(stripped, plan)
        elif stripped.startswith("shutdown"):
            plan.shutdown = True
        else:
            plan.bootstrap.append(stripped)
    return plan


def _parse_docker_run(line: str, plan: BootPlan) -> None:
    tokens = shlex.split(line)[2:]
    i = 0
    while i < len(tokens) and tokens[i].startswith("-"):
        tok = tokens[i]
        if tok in ("-e", "--env"):
            key, val = _split_env(tokens[i + 1])
            plan.env[key] = val
            i += 2
        elif tok.startswith("--env="):
            key, val = _split_env(tok.split("=", 1)[1])
            plan.env[key] = val
            i += 1
        elif tok in _VALUE_OPTIONS:
            i += 2
        else:
            i += 1
    if i < len(tokens):
        plan.image = tokens[i]
        i += 1
    command = tokens[i:]
    if command and command[0] == "env":
        command = command[1:]
        while command and "=" in command[0] and not command[0].startswith("-"):
            key, val = _split_env(command.pop(0))
            plan.env[key] = val
    plan.command = command


def bind_command(
    command: list[str], host: str, *, port: int | None = None
) -> tuple[list[str], str]:
    """The container command, run with this venv's Python, bound to ``host``.

    Args:
        command: The container's command (``python -m distributed.cli.dask_scheduler ...``,
            ``dask scheduler ...``, ``python -m distributed.cli.dask_spec ADDR --spec JSON``).
        host: The VM's loopback address.
        port: Scheduler port override (the emulated firewall moves the real scheduler away).

    Returns:
        The argv to run, and the role: ``scheduler``, ``worker`` or ``other``.
    """
    argv = list(command)
    if not argv:
        return argv, "other"
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif argv[0] == "dask":
        argv = [sys.executable, "-m", "dask", *argv[1:]]
    module = argv[argv.index("-m") + 1] if "-m" in argv[:2] else ""
    if module == "oxeo_flows.dask_vm" and len(argv) > 4:
        # The TLS wrapper: ``python -m oxeo_flows.dask_vm ROLE MODULE ARGS`` binds its inner
        # command.
        inner, role = bind_command(["python", "-m", *argv[4:]], host, port=port)
        return [*argv[:4], *inner[2:]], role
    sub = argv[3] if len(argv) > 3 else ""
    is_scheduler = module == "distributed.cli.dask_scheduler" or (
        module == "dask" and sub == "scheduler"
    )
    is_worker = module == "distributed.cli.dask_worker" or (module == "dask" and sub == "worker")
    if is_scheduler:
        if "--host" not in argv:
            argv += ["--host", host]
        if "--dashboard-address" not in argv and "--no-dashboard" not in argv:
            argv += ["--dashboard-address", f"{host}:8787"]
        if port is not None:
            if "--port" in argv:
                argv[argv.index("--port") + 1] = str(port)
            else:
                argv += ["--port", str(port)]
        return argv, "scheduler"
    if "distributed.cli.dask_spec" in argv and "--spec" in argv:
        at = argv.index("--spec") + 1
        spec = json.loads(argv[at])
        opts = spec.setdefault("opts", {})
        opts.setdefault("host", host)
        opts.setdefault("dashboard_address", f"{host}:0")
        argv[at] = json.dumps(spec)
        return argv, "worker"
    if is_worker:
        if "--host" not in argv:
            argv += ["--host", host]
        return argv, "worker"
    return argv, "other"


class Container:
    """A container command running as a process group, its output appended to a console file."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        console: Path,
        *,
        cwd: str | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.argv = argv
        self.console = console
        self.on_exit = on_exit
        self._stopping = False
        out: IO[Any] = console.open("ab")
        try:
            self.process = subprocess.Popen(
                argv,
                env=process_env(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd,
            )
        finally:
            out.close()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="oxeo-container")
        self._watcher.start()

    @property
    def pid(self) -> int:
        """The process (and process group) id."""
        return self.process.pid

    def _watch(self) -> None:
        code = self.process.wait()
        if self.on_exit is not None and not self._stopping:
            self.on_exit(code)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def stop(self, *, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
        self._stopping = True
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.process.poll() is not None and not _group_alive(self.process.pid):
                    return
                time.sleep(0.05)
        self.process.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


@dataclass(kw_only=True)
class Machine:
    """An emulated VM or instance: its loopback address, console, and the container it runs."""

    name: str
    address: str
    console: Path
    plan: BootPlan | None = None
    role: str = "other"
    container: Container | None = None
    #: ``time.monotonic()`` when the container's process started (None before).
    container_started_at: float | None = None
    #: ``time.monotonic()`` when the container's process exited by itself (None before).
    container_exited_at: float | None = None
    exit_code: int | None = None
    stopped: threading.Event = field(default_factory=threading.Event)

    def log(self, line: str) -> None:
        """Append a line to the console."""
        with self.console.open("a", encoding="utf-8") as out:
            out.write(line.rstrip("\n") + "\n")

    def serial_output(self) -> str:
        """The console so far."""
        try:
            return self.console.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class MachineHost:
    """What the Compute and EC2 emulators share: booting machines and tracking their processes.

    Subclasses provide `start`, `stop`, `_machines` and may override `_fault` (rewrite a
    container's argv) and `_shutdown` (the container exited and cloud-init shuts down).
    """

    boot_delay: float
    container_start_delay: float
    _threads: list[threading.Thread]
    _lock: threading.RLock
    _die: dict[str, str]

    def die_at_boot(self, role: str = "scheduler", message: str | None = None) -> None:
        """Make the containers of ``role`` (``scheduler``, ``worker``) exit with 1 at start."""
        self._die[role] = message or (
            f"distributed.{role} - ERROR - emulated fault: the {role} died at boot "
            "(e.g. the image has no matching distributed version)"
        )

    def start(self) -> str:
        """Start serving; returns the endpoint."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every machine and the server."""
        raise NotImplementedError

    def _machines(self) -> list[Machine]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every boot, stop and delete in progress has finished."""
        end = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))

    def machines(self) -> list[Machine]:
        """Every machine booted so far and not yet forgotten (deleted ones may remain)."""
        with self._lock:
            return list(self._machines())

    def processes(self) -> list[int]:
        """Process ids of the containers still running."""
        with self._lock:
            return [
                m.container.pid
                for m in self._machines()
                if m.container is not None and m.container.alive()
            ]

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self._threads.append(thread)
        thread.start()

    def _run_user_data(self, machine: Machine, user_data: str | bytes) -> None:
        """Cloud-init: log and skip the bootstrap, then start the container after its delay."""
        plan = parse_user_data(user_data)
        machine.plan = plan
        for step in plan.bootstrap:
            machine.log(f"cloud-init[skipped]: {step}")
        if not plan.command:
            machine.log("[emulator] no container to run")
            return
        machine.log(f"docker: using image {plan.image} (emulated: the current virtualenv)")
        if machine.stopped.wait(self.container_start_delay):
            return
        argv, role = bind_command(plan.command, machine.address)
        machine.role = role
        argv = self._fault(machine, plan, argv)
        machine.log(f"docker: starting container: {' '.join(argv)[:300]}")
        with self._lock:
            if machine.stopped.is_set():
                return
            machine.container_started_at = time.monotonic()
            machine.container = Container(
                argv, plan.env, machine.console, on_exit=lambda code: self._exited(machine, code)
            )

    def _fault(self, machine: Machine, plan: BootPlan, argv: list[str]) -> list[str]:
        message = self._die.get(machine.role)
        if message is None:
            return argv
        return [argv[0], "-c", f"import sys; print({message!r}, file=sys.stderr); sys.exit(1)"]

    def _exited(self, machine: Machine, code: int) -> None:
        machine.container_exited_at = time.monotonic()
        machine.exit_code = code
        machine.log(f"docker: container exited with code {code}")
        if machine.plan is not None and machine.plan.shutdown and not machine.stopped.is_set():
            machine.log("cloud-init: shutdown -h now")
            self._shutdown(machine)

    def _shutdown(self, machine: Machine) -> None:
        pass


class SilentListener:
    """A TCP port that accepts connections and never answers (a dropping firewall)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self._accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="oxeo-silent")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self._accepted.append(conn)

    def close(self) -> None:
        """Stop listening and drop every accepted connection."""
        self._stop.set()
        self._thread.join(2)
        for conn in self._accepted:
            conn.close()
        self.sock.close()
