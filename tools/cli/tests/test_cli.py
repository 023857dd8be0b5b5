"""The yobidashi command, run as users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """\
contacts:
  - {id: tanaka, name: 田中, phones: ["090-1111-2222"]}
schedules:
  - id: primary
    name: Primary
    timezone: Asia/Tokyo
    layers:
      - rotation: {type: weekly, start: 2026-11-02T09:00, members: [tanaka]}
"""
BAD = """\
contacts:
  - {id: tanaka, name: 田中, phones: ["12"], language: fr}
"""
DANGLING = """\
routes:
  - {id: r, policy: nope}
"""


def yobidashi(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "yobidashi"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text(GOOD)
    result = yobidashi("config", "check", str(path))
    assert result.returncode == 0
    assert "ok — 1 contacts, 1 schedules" in result.stdout


def test_config_check_prints_every_problem_by_line_and_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text(BAD)
    result = yobidashi("config", "check", str(path))
    assert result.returncode == 1
    assert f"{path}: 2 problem(s)" in result.stdout
    assert "line 2: contacts.0.phones: invalid phone number" in result.stdout
    assert "line 2: contacts.0.language: Input should be 'ja' or 'en'" in result.stdout
    path.write_text(DANGLING)
    result = yobidashi("config", "check", str(path))
    assert result.returncode == 1
    assert "line 2: routes.0.policy: unknown policy 'nope'" in result.stdout


def test_config_check_of_a_missing_file(tmp_path: Path) -> None:
    result = yobidashi("config", "check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stdout


def test_oncall_now_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text(GOOD)
    result = yobidashi("oncall", "now", "--config", str(path), "--at", "2026-11-24T12:00+09:00")
    assert result.returncode == 0, result.stdout
    assert "Primary" in result.stdout
    assert "田中 (+81 90-****-2222)" in result.stdout
    as_json = yobidashi(
        "oncall", "now", "--config", str(path), "--at", "2026-11-24T12:00+09:00", "--json"
    )
    view = json.loads(as_json.stdout)
    assert view["schedules"][0]["on_call"]["id"] == "tanaka"


@pytest.mark.parametrize(
    "args",
    [
        ["oncall", "now", "--dialer", "http://127.0.0.1:9"],
        ["send-test-alert", "--ingest", "http://127.0.0.1:9", "--token", "x"],
    ],
)
def test_unreachable_services_are_explained(args: list[str]) -> None:
    result = yobidashi(*args)
    assert result.returncode == 1
    assert "cannot" in result.stdout


def test_the_example_config_in_deploy_is_valid() -> None:
    example = Path(__file__).resolve().parents[3] / "deploy" / "oncall" / "oncall.example.yaml"
    result = yobidashi("config", "check", str(example))
    assert result.returncode == 0, result.stdout


def test_heartbeat_without_its_settings_names_each_missing_one() -> None:
    exe = Path(sys.executable).parent / "yobidashi"
    result = subprocess.run(
        [str(exe), "heartbeat", "--every", "soon"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PORT": "8000"},  # a service's PORT is not the heartbeat's
    )
    assert result.returncode == 2
    assert "HEARTBEAT_NUMBER: Field required" in result.stdout
    assert "INGEST_TOKEN: Field required" in result.stdout
    assert "HEARTBEAT_EVERY:" in result.stdout


def test_heartbeat_settings_come_from_its_own_variables() -> None:
    from yobidashi_cli.settings import HeartbeatSettings

    env = {
        "HEARTBEAT_NUMBER": "+819012340099",
        "INGEST_TOKEN": "t" * 20,
        "HEARTBEAT_EVERY": "10m",
        "HEARTBEAT_PORT": "9200",
        "PORT": "8000",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = HeartbeatSettings()
    assert settings.heartbeat_every == 600
    assert settings.heartbeat_port == 9200
    assert settings.heartbeat_timeout == 120
