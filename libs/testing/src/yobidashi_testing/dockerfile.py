"""Reading a Dockerfile, and replaying its build stage where no Docker engine runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def replay_build_stage(dockerfile: Path, repo: Path, work: Path, uv: Path) -> Path:
    """Copy exactly what the build stage COPYs into ``work/src`` and run its ``uv sync``
    commands there, into ``work/venv`` (returned). Stops at the run stage."""
    src, venv = work / "src", work / "venv"
    src.mkdir(parents=True)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env["UV_LINK_MODE"] = "copy"
    env.pop("VIRTUAL_ENV", None)
    for keyword, value in instructions(dockerfile):
        if keyword == "FROM" and (venv / "bin").exists():
            break  # the run stage
        if keyword == "COPY" and not value.startswith("--from"):
            *sources, dest = value.split()
            for source in sources:
                if (repo / source).is_dir():
                    shutil.copytree(
                        repo / source,
                        src / dest,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "tests"),
                    )
                    continue
                target = src / dest
                if dest.endswith("/") or dest in {".", "./"}:
                    target = target / Path(source).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(repo / source, target)
        if keyword == "RUN" and "uv sync" in value:
            arguments = value.split("uv sync", 1)[1].split()
            subprocess.run([str(uv), "sync", *arguments], cwd=src, env=env, check=True)
    return venv
