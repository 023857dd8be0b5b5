"""Runs docker-compose.yml's stack from the built images, for ``make compose-test``.

Under podman it is podman-compose, with two things done here that Docker's compose does itself:
podman 4.3 has no systemd timers to run healthchecks, so ``wait_healthy`` runs them; and
podman-compose ignores ``condition: service_healthy``, so the caller starts the services in
dependency order. The compose file stays as users run it: everything this machine needs is on
the command line or in the environment of the compose process.

Every container, network and volume the stack makes carries the project's compose label, and
``remove_everything`` removes by that label (whatever ``down`` may have missed).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yobidashi_testing.images.engine import REPO, Engine

COMPOSE_FILE = REPO / "docker-compose.yml"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def compose_command(engine: Engine) -> list[str] | None:
    if engine.name == "docker":
        return [engine.executable, "compose"]
    # podman-compose is a dev dependency: beside this interpreter, whatever PATH says.
    beside = Path(sys.executable).parent / "podman-compose"
    podman_compose = str(beside) if beside.exists() else shutil.which("podman-compose")
    # One container per service with its own network namespace, as Docker's compose does
    # (podman-compose would otherwise put the project into one pod).
    return [podman_compose, "--in-pod", "false"] if podman_compose else None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as compose reads .env (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def startup_order(services: list[str]) -> list[list[str]]:
    """``services`` in groups, each after the ones its members' ``depends_on`` name."""
    declared = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    groups: list[list[str]] = []
    started: set[str] = set()
    while len(started) < len(services):
        group = [
            name
            for name in services
            if name not in started
            and set(declared[name].get("depends_on") or ()) & set(services) <= started
        ]
        if not group:
            raise ValueError(f"circular depends_on among {set(services) - started}")
        groups.append(group)
        started.update(group)
    return groups


@dataclass
class ComposeStack:
    """One compose project: ``values`` become its .env (in ``workdir``), nothing else does."""

    engine: Engine
    command: list[str]
    workdir: Path
    values: dict[str, str]
    profiles: list[str]
    project: str = field(default_factory=lambda: f"yobidashi-ct-{secrets.token_hex(3)}")

    def __post_init__(self) -> None:
        self.env_file = self.workdir / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.values.items()))
        os.chmod(self.env_file, 0o600)  # it holds the stack's tokens

    def compose(self, *args: str, timeout: float = 600) -> str:
        command = [*self.command, "--project-name", self.project, "--file", str(COMPOSE_FILE)]
        command += ["--env-file", str(self.env_file)]
        for profile in self.profiles:
            command += ["--profile", profile]
        # Only .env decides the stack's values, not whatever the caller's shell exports.
        env = {
            key: value
            for key, value in self.engine.env().items()
            if key in {"PATH", "HOME", "CONTAINERS_CONF", "DOCKER_HOST", "XDG_RUNTIME_DIR"}
        }
        result = subprocess.run(
            [*command, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stderr + result.stdout).strip().splitlines()[-25:])
            raise RuntimeError(f"compose {' '.join(args)} exited {result.returncode}:\n{tail}")
        return result.stdout

    def up(self, *services: str) -> None:
        self.compose("up", "--detach", "--no-deps", "--no-build", *services)

    def container(self, service: str) -> str:
        """The running container's name."""
        names = self._labelled(["ps", "--all"], "{{.Names}}", service=service)
        if len(names) != 1:
            raise LookupError(f"{service}: expected one container, found {names}")
        return names[0]

    def inspect(self, service: str) -> dict[str, Any]:
        result = self.engine.run("inspect", "--type", "container", self.container(service))
        (details,) = json.loads(result.stdout)
        return dict(details)

    def health(self, service: str) -> str:
        """Runs the healthcheck where nothing else does (podman), then reads the verdict."""
        name = self.container(service)
        if self.engine.name == "podman":
            # Exit 0 healthy, 1 unhealthy (or still in its start period); the state is updated.
            self.engine.run("healthcheck", "run", name, check=False, timeout=30)
        state = self.inspect(service)["State"]
        health = state.get("Health") or state.get("Healthcheck") or {}
        return str(health.get("Status", "none")) if state.get("Running") else "not running"

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(services)
        while waiting:
            waiting = [service for service in waiting if self.health(service) != "healthy"]
            if waiting and time.monotonic() >= deadline:
                logs = {service: self.logs(service)[-1500:] for service in waiting}
                raise TimeoutError(f"not healthy after {timeout:.0f} s: {waiting}\n{logs}")
            if waiting:
                time.sleep(2)

    def logs(self, service: str) -> str:
        result = self.engine.run("logs", self.container(service), check=False)
        return result.stdout + result.stderr

    def volumes(self) -> list[str]:
        return self._labelled(["volume", "ls"], "{{.Name}}")

    def leftovers(self) -> dict[str, list[str]]:
        """What of this project still exists, by kind."""
        return {
            "containers": self._labelled(["ps", "--all"], "{{.Names}}"),
            "volumes": self.volumes(),
            "networks": self._labelled(["network", "ls"], "{{.Name}}"),
        }

    def remove_everything(self) -> None:
        """``down`` with the volumes, then by label whatever remains. Never raises: it runs
        when something else already failed, and its outcome is checked with ``leftovers``."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.compose("down", "--volumes", "--timeout", "5", timeout=300)
        left = self.leftovers()
        if left["containers"]:
            self.engine.run("rm", "--force", *left["containers"], check=False)
        if left["volumes"]:
            self.engine.run("volume", "rm", "--force", *left["volumes"], check=False)
        if left["networks"]:
            self.engine.run("network", "rm", *left["networks"], check=False)

    def _labelled(self, command: list[str], template: str, service: str | None = None) -> list[str]:
        """The names a listing ``command`` prints for this project (and service)."""
        arguments = [*command, "--filter", f"label={PROJECT_LABEL}={self.project}"]
        if service is not None:
            arguments += ["--filter", f"label={SERVICE_LABEL}={service}"]
        result = self.engine.run(*arguments, "--format", template)
        return [line for line in result.stdout.splitlines() if line.strip()]
