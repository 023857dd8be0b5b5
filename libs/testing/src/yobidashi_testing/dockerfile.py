"""Reading a Dockerfile, and replaying its build stage where no Docker engine runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

# The instructions a builder substitutes ARG and ENV values in, plus RUN, whose shell sees them
# as environment variables (the same thing for the plain ${NAME} this project uses).
SUBSTITUTED = frozenset(
    {"ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "RUN", "USER", "VOLUME", "WORKDIR"}
)
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def instructions(
    dockerfile: Path, build_args: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped.

    With ``build_args``, variables are substituted as the build would: ARGs before the first
    FROM are global and reach a stage only through a bare ``ARG NAME`` there; a build argument
    beats a default; an ARG without a value is empty."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out if build_args is None else _substituted(out, build_args)


def _substitute(text: str, variables: Mapping[str, str]) -> str:
    """Known names only: anything else is the shell's business (RUN) or literal."""
    return VARIABLE.sub(lambda m: variables.get(m[1] or m[2], m[0]), text)


def _substituted(
    steps: list[tuple[str, str]], build_args: Mapping[str, str]
) -> list[tuple[str, str]]:
    global_args: dict[str, str] = {}
    stage: dict[str, str] | None = None  # None until the first FROM
    out = []
    for keyword, value in steps:
        variables = global_args if stage is None else stage
        if keyword in SUBSTITUTED:
            value = _substitute(value, variables)
        if keyword == "FROM":
            stage = {}
        elif keyword == "ARG":
            name, has_default, default = value.partition("=")
            if name in build_args:
                variables[name] = build_args[name]
            elif has_default:
                variables[name] = default
            else:
                variables[name] = global_args.get(name, "") if stage is not None else ""
        elif keyword == "ENV" and stage is not None:
            for pair in value.split():
                name, _, setting = pair.partition("=")
                stage[name] = setting
        out.append((keyword, value))
    return out


def replay_build_stage(
    dockerfile: Path,
    repo: Path,
    work: Path,
    uv: Path,
    build_args: Mapping[str, str] | None = None,
) -> Path:
    """Copy exactly what the build stage COPYs into ``work/src`` and run its ``uv sync``
    commands there, into ``work/venv`` (returned). Stops at the run stage."""
    src, venv = work / "src", work / "venv"
    src.mkdir(parents=True)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env["UV_LINK_MODE"] = "copy"
    env.pop("VIRTUAL_ENV", None)
    for keyword, value in instructions(dockerfile, build_args or {}):
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
                        ignore=shutil.ignore_patterns("__pycache__", "tests", ".*cache", ".venv"),
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
