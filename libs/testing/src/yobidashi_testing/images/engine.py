"""The container engine that builds and runs the images: a Docker engine that answers, else podman.

Podman runs with ``containers.conf`` beside this file (``CONTAINERS_CONF``, unless the caller
set its own): the settings this kind of machine needs, kept out of every image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[5]
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")


@dataclass(frozen=True)
class Engine:
    name: Literal["docker", "podman"]
    executable: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.name == "podman":
            env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
        return env

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = 600,
        stdin: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.executable, *args],
            env=self.env(),
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise EngineError(f"{self.name} {' '.join(args)}", result)
        return result

    def image_exists(self, reference: str) -> bool:
        return self.run("image", "inspect", reference, check=False).returncode == 0

    def image_label(self, reference: str, label: str) -> str | None:
        result = self.run(
            "image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', reference,
            check=False,
        )  # fmt: skip
        value = result.stdout.strip()
        return value if result.returncode == 0 and value not in {"", "<no value>"} else None


class EngineError(RuntimeError):
    def __init__(self, what: str, result: subprocess.CompletedProcess[str]) -> None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        super().__init__(f"{what} exited {result.returncode}:\n" + "\n".join(tail))
        self.result = result


def docker_engine() -> Engine | None:
    """The Docker CLI, when a daemon answers it (the CLI alone is common and useless)."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    # podman-docker installs a `docker` that is podman: treat it as podman.
    if probe.returncode != 0 or "podman" in probe.stdout.lower():
        return None
    return Engine("docker", docker)


def find_engine() -> Engine | None:
    docker = docker_engine()
    if docker is not None:
        return docker
    podman = shutil.which("podman")
    return Engine("podman", podman) if podman else None
