"""Run Yobidashi's console scripts as real child processes, the way production runs them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from yobidashi_harness.managed import Managed
from yobidashi_harness.nats_server import free_port


def script(name: str) -> str:
    """A console script installed beside this interpreter (``.venv/bin/<name>``)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed in {path.parent}; run `make venv`")
    return str(path)


class ServiceProcess(Managed):
    """One service (``yobidashi-ingest`` ...) started with an environment, logs to a file."""

    def __init__(
        self,
        command: str,
        env: Mapping[str, str],
        log_file: Path,
        port: int | None = None,
        health_path: str = "/healthz",
    ) -> None:
        self.command = command
        self.port = port or free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        # Children must not inherit proxy settings: everything here is loopback.
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            self.env.pop(var, None)
        self.log_file = log_file
        self.health_path = health_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                [script(self.command)], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.wait_http(self.health_path, timeout)
        return self

    def wait_http(self, path: str, timeout: float, expect: int = 200) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.command} exited with {self._proc.returncode}; log: {self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                    if resp.status == expect:
                        return
                    last = str(resp.status)
            except urllib.error.HTTPError as exc:
                last = str(exc.code)
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise TimeoutError(f"{self.command} {path} not {expect} after {timeout}s ({last})")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_http("/readyz", timeout)

    def close(self) -> None:
        self.stop()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as Kubernetes does, and wait for a graceful exit."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        code = self._proc.returncode
        self._proc = None
        return code

    def kill(self) -> None:
        """kill -9: no chance to drain or ack anything."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
