"""The service images: multi-stage, non-root, with a healthcheck, and a build stage that works.

No Docker engine runs on these machines, so the build stage's own ``uv sync`` commands are
replayed in a scratch directory holding exactly what the Dockerfile COPYs.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from yobidashi_testing.dockerfile import instructions as dockerfile_instructions
from yobidashi_testing.dockerfile import replay_build_stage

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["ingest", "dialer", "acker"]
UV = REPO / ".tools" / "bootstrap" / "bin" / "uv"


def instructions(service: str) -> list[tuple[str, str]]:
    return dockerfile_instructions(REPO / "services" / service / "Dockerfile")


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_multi_stage_non_root_with_healthcheck(service: str) -> None:
    steps = instructions(service)
    keywords = [k for k, _ in steps]
    assert keywords.count("FROM") >= 2, "multi-stage"
    users = [v for k, v in steps if k == "USER"]
    assert users, "must drop root"
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert "HEALTHCHECK" in keywords
    assert any("/healthz" in v for k, v in steps if k == "HEALTHCHECK")
    entry = next(v for k, v in steps if k == "ENTRYPOINT")
    scripts = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())[
        "project"
    ]["scripts"]
    assert entry == f'["yobidashi-{service}"]'
    assert f"yobidashi-{service}" in scripts
    final_stage = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    assert not any("uv" in v and k == "RUN" for k, v in final_stage), "no build tools at run"


@pytest.mark.parametrize("service", SERVICES)
def test_every_copied_path_exists(service: str) -> None:
    for keyword, value in instructions(service):
        if keyword != "COPY" or value.startswith("--from"):
            continue
        *sources, _dest = value.split()
        for source in sources:
            assert (REPO / source).exists(), f"{service}/Dockerfile copies missing {source}"


@pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make venv`")
@pytest.mark.parametrize("service", SERVICES)
def test_build_stage_commands_produce_a_runnable_console_script(
    service: str, tmp_path: Path
) -> None:
    replay_build_stage(REPO / "services" / service / "Dockerfile", REPO, tmp_path, UV)
    console = tmp_path / "venv" / "bin" / f"yobidashi-{service}"
    assert console.exists()
    # The non-editable install must not point back into the source tree.
    shutil.rmtree(tmp_path / "src")
    result = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", f"import yobidashi_{service}.main"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
