"""``make images``: every image compose builds, with the engine this machine has.

python -m yobidashi_testing.images [SERVICE ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from yobidashi_testing.images.build import build_image, compose_services, image_specs
from yobidashi_testing.images.engine import REPO, find_engine
from yobidashi_testing.images.standins import base_images, ensure_base_images

COMPOSE_FILE = REPO / "docker-compose.yml"


def default_cache_dir() -> Path:
    """Machine-wide for root (the engine's image store is too), per user otherwise."""
    if configured := os.environ.get("YOBIDASHI_IMAGE_CACHE"):
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/yobidashi-images")
    return Path.home() / ".cache" / "yobidashi-images"


def log(message: str) -> None:
    print(f"images: {message}", flush=True)  # noqa: T201 - a command's own output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yobidashi_testing.images")
    parser.add_argument("services", nargs="*", help="only these compose services' images")
    args = parser.parse_args(argv)
    engine = find_engine()
    if engine is None:
        log("no Docker engine answers and podman is missing: scripts/install-system-deps images")
        return 1
    log(f"engine: {engine.name}" + (f" (CONTAINERS_CONF={engine.env()['CONTAINERS_CONF']})"
                                   if engine.name == "podman" else ""))  # fmt: skip
    started = time.monotonic()
    specs = [
        s for s in image_specs(COMPOSE_FILE) if not args.services or s.service in args.services
    ]
    dockerfiles = sorted({spec.dockerfile for spec in specs})
    nats = compose_services(COMPOSE_FILE)["nats"]["image"]
    bases = [image for dockerfile in dockerfiles for image in base_images(dockerfile, nats)]
    unique = list({image.reference: image for image in bases}.values())
    on_standins = ensure_base_images(engine, unique, default_cache_dir(), log)
    for spec in specs:
        began = time.monotonic()
        build_image(engine, spec, on_standins=on_standins)
        log(f"{spec.image} built ({time.monotonic() - began:.0f} s)")
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
