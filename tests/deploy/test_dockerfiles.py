"""Every image: the one Dockerfile with the build arguments docker-compose.yml gives it.

Each is multi-stage, runs as uid 10001, has a healthcheck on the port its server reads, runs
its package's console script, keeps build tools out of the run stage, and has a build stage
that works: its own ``uv sync`` commands are replayed in a scratch directory holding exactly
what it COPYs (``make compose-test`` builds and runs the real images where an engine exists).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from yobidashi_testing.dockerfile import instructions, replay_build_stage
from yobidashi_testing.images.build import ImageSpec, image_specs

REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".tools" / "bootstrap" / "bin" / "uv"
IMAGES = {spec.service: spec for spec in image_specs(REPO / "docker-compose.yml")}
# Per image: what its installed package must do without the sources it was built from.
WORKS_WITHOUT_SOURCES = {
    "ingest": "import yobidashi_ingest.main",
    "dialer": "import yobidashi_dialer.main",
    "acker": "import yobidashi_acker.main",
    "twilio-sim": "import yobidashi_twilio_sim.main; "
    "from yobidashi_twilio_sim.spec import load_spec; assert load_spec()['paths']",
    "heartbeat": "from yobidashi_cli.main import parser; parser().parse_args(['heartbeat'])",
    "zabbix-standin": "from yobidashi_zabbix_standin.settings import StandInSettings; "
    "StandInSettings(api_token='t').standin()",
}
# No image holds test tooling.
WITH_TEST_TOOLING: set[str] = set()


def steps(spec: ImageSpec) -> list[tuple[str, str]]:
    return instructions(spec.dockerfile, spec.args)


def final_stage(spec: ImageSpec) -> list[tuple[str, str]]:
    all_steps = steps(spec)
    return all_steps[max(i for i, (k, _) in enumerate(all_steps) if k == "FROM") :]


def final_env(spec: ImageSpec) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, value in final_stage(spec):
        for pair in value.split() if keyword == "ENV" else []:
            name, _, setting = pair.partition("=")
            env[name] = setting
    return env


def package_scripts(package: str) -> dict[str, str]:
    for pyproject in REPO.glob("*/*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        if project["name"] == package:
            return dict(project.get("scripts", {}))
    raise LookupError(f"{package} is not a workspace member")


def workspace_members() -> set[str]:
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = set()
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members |= {str(p.parent.relative_to(REPO)) for p in REPO.glob(f"{pattern}/pyproject.toml")}
    return members


def test_every_image_is_covered() -> None:
    assert set(IMAGES) == set(WORKS_WITHOUT_SOURCES)
    assert {spec.dockerfile for spec in IMAGES.values()} == {REPO / "Dockerfile"}


@pytest.mark.parametrize("service", IMAGES)
def test_image_is_multi_stage_non_root_with_healthcheck(service: str) -> None:
    spec = IMAGES[service]
    keywords = [k for k, _ in steps(spec)]
    assert keywords.count("FROM") >= 2, "multi-stage"
    final = final_stage(spec)
    users = [v for k, v in final if k == "USER"]
    assert users, "must drop root"
    assert users[-1] == "10001:10001"
    assert not any("uv" in v for k, v in final if k == "RUN"), "no build tools at run time"
    (healthcheck,) = [v for k, v in final if k == "HEALTHCHECK"]
    assert "YOBIDASHI_PORT_VARIABLE" in healthcheck
    assert "YOBIDASHI_HEALTH_PATH" in healthcheck
    # The healthcheck asks the port the server reads, from the variable the server reads.
    env = final_env(spec)
    port_variable = env["YOBIDASHI_PORT_VARIABLE"]
    assert port_variable == spec.args.get("SETTINGS_PREFIX", "") + "PORT"
    assert env[port_variable] == spec.args["PORT"]
    assert env[spec.args.get("SETTINGS_PREFIX", "") + "HOST"] == "0.0.0.0"
    expected_path = "/metrics" if service == "heartbeat" else "/healthz"
    assert env["YOBIDASHI_HEALTH_PATH"] == expected_path
    assert ("EXPOSE", spec.args["PORT"]) in final


@pytest.mark.parametrize("service", IMAGES)
def test_the_entrypoint_is_the_packages_console_script(service: str) -> None:
    spec = IMAGES[service]
    final = final_stage(spec)
    (entrypoint,) = [json.loads(v) for k, v in final if k == "ENTRYPOINT"]
    assert entrypoint == ["/app/entrypoint"]
    command = spec.args.get("COMMAND", spec.args["PACKAGE"])
    assert command in package_scripts(spec.args["PACKAGE"])
    link = f'ln -s "/app/.venv/bin/{command}" /app/entrypoint'
    assert any(link in v and f'test -x "/app/.venv/bin/{command}"' in v for k, v in final)


@pytest.mark.parametrize("service", IMAGES)
def test_every_copied_path_exists_and_uv_sees_every_member(service: str) -> None:
    copied = set()
    for keyword, value in steps(IMAGES[service]):
        if keyword == "COPY" and not value.startswith("--from"):
            *sources, _dest = value.split()
            for source in sources:
                assert (REPO / source).exists(), f"the Dockerfile copies missing {source}"
                copied.add(source)
    # uv sync --locked needs every workspace member's pyproject.toml before the sources.
    for member in workspace_members():
        assert f"{member}/pyproject.toml" in copied, f"the Dockerfile misses {member}"


@pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make venv`")
@pytest.mark.parametrize("service", IMAGES)
def test_build_stage_produces_a_working_install(service: str, tmp_path: Path) -> None:
    """The build stage's own commands, replayed on exactly what it COPYs."""
    spec = IMAGES[service]
    venv = replay_build_stage(spec.dockerfile, REPO, tmp_path, UV, spec.args)
    command = spec.args.get("COMMAND", spec.args["PACKAGE"])
    assert (venv / "bin" / command).exists()
    shutil.rmtree(tmp_path / "src")  # a non-editable install must not need the sources
    python = str(venv / "bin" / "python")
    check = WORKS_WITHOUT_SOURCES[service]
    result = subprocess.run([python, "-c", check], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    tooling = "import importlib.util as u; print(bool(u.find_spec('yobidashi_testing')))"
    found = subprocess.run([python, "-c", tooling], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == str(service in WITH_TEST_TOOLING)
