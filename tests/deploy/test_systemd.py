"""deploy/systemd: one unit per service, each accepted by systemd-analyze verify as it is.

``verify`` checks the unit's syntax and that ExecStart's program exists, so the units are
verified with ExecStart pointing at this checkout's own console scripts (the install puts the
same ones in /opt/yobidashi/bin) and the environment file made optional. Anything ``verify``
prints, a warning included, fails the test.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
INSTALLED = "/opt/yobidashi/bin/"
PACKAGES = {
    "ingest": "services/ingest",
    "dialer": "services/dialer",
    "acker": "services/acker",
    "heartbeat": "tools/cli",
}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / f"yobidashi-{name}.service")
    return parser


def test_every_service_has_a_unit_and_nothing_else_is_there() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(
        f"yobidashi-{name}.service" for name in PACKAGES
    )


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_the_unit_starts_a_console_script_its_package_declares(name: str) -> None:
    program = unit(name)["Service"]["ExecStart"].split()[0]
    assert program.startswith(INSTALLED)
    project = tomllib.loads((REPO / PACKAGES[name] / "pyproject.toml").read_text())
    assert program.removeprefix(INSTALLED) in project["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_the_unit_runs_unprivileged_and_read_only(name: str) -> None:
    service = unit(name)["Service"]
    assert service["DynamicUser"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["ProtectSystem"] == "strict"
    assert service["Restart"] == "always"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_systemd_analyze_verify_accepts_the_unit(name: str, tmp_path: Path) -> None:
    bin_dir = f"{Path(sys.executable).parent}/"
    text = (UNITS / f"yobidashi-{name}.service").read_text()
    here = tmp_path / f"yobidashi-{name}.service"
    here.write_text(
        text.replace(INSTALLED, bin_dir).replace("EnvironmentFile=", "EnvironmentFile=-")
    )
    found = subprocess.run(
        ["systemd-analyze", "verify", str(here)], capture_output=True, text=True, check=False
    )
    assert (found.returncode, found.stdout + found.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_verify_is_strict_enough_to_fail(tmp_path: Path) -> None:
    text = (UNITS / "yobidashi-ingest.service").read_text()
    broken = tmp_path / "yobidashi-ingest.service"
    broken.write_text(text.replace("RestartSec=2", "RestartSec=soon"))
    found = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, check=False
    )
    assert "Failed to parse sec value" in found.stdout + found.stderr
