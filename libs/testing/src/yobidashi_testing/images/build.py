"""Builds every image docker-compose.yml builds, with its build arguments from there.

docker-compose.yml is the one list of images and their arguments; this only adds what the
engine on this machine needs. Under podman that is ``--format docker`` (podman's default OCI
format has no HEALTHCHECK), never pulling a base that is a local stand-in, and, on stand-ins,
the host's CA bundle mounted for the build steps (a proxy's CA stays out of every image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yobidashi_testing.images.engine import Engine
from yobidashi_testing.images.standins import HOST_CA_BUNDLE, PYTHON_ENV


@dataclass(frozen=True)
class ImageSpec:
    service: str
    image: str
    context: Path
    dockerfile: Path
    args: dict[str, str]


def compose_services(compose_file: Path) -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(compose_file.read_text())["services"]
    return services


def image_specs(compose_file: Path) -> list[ImageSpec]:
    specs = []
    for name, service in compose_services(compose_file).items():
        build = service.get("build")
        if build is None:
            continue
        context = (compose_file.parent / build["context"]).resolve()
        args = {str(key): str(value) for key, value in (build.get("args") or {}).items()}
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        specs.append(ImageSpec(name, service["image"], context, dockerfile, args))
    return specs


def build_command(engine: Engine, spec: ImageSpec, *, on_standins: bool) -> list[str]:
    command = ["build", "--file", str(spec.dockerfile), "--tag", spec.image]
    for key, value in spec.args.items():
        command += ["--build-arg", f"{key}={value}"]
    if engine.name == "podman":
        command += ["--format", "docker", "--layers", "--force-rm"]
        if on_standins:
            bundle = PYTHON_ENV["SSL_CERT_FILE"]
            command += ["--pull=never", "--volume", f"{HOST_CA_BUNDLE}:{bundle}:ro"]
    return [*command, str(spec.context)]


def build_image(engine: Engine, spec: ImageSpec, *, on_standins: bool) -> None:
    engine.run(*build_command(engine, spec, on_standins=on_standins), timeout=1200)
