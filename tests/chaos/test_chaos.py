"""The chaos run: problems through a stack that keeps being broken, then the audit.

``make test`` runs a small pass (60 problems); ``make chaos`` runs 1,000
(``CHAOS_PROBLEMS``, ``CHAOS_SECONDS``, ``CHAOS_ZABBIX_OUTAGE``, ``CHAOS_SEED`` change it).
The report is printed and kept in the test's directory as chaos-report.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_testing.chaos import ChaosConfig, run

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.zabbix]


def config_from_env() -> ChaosConfig:
    problems = int(os.environ.get("CHAOS_PROBLEMS", "60"))
    return ChaosConfig(
        problems=problems,
        seconds=float(os.environ.get("CHAOS_SECONDS", str(max(20.0, problems / 10)))),
        zabbix_outage=float(os.environ.get("CHAOS_ZABBIX_OUTAGE", "20")),
        seed=int(os.environ.get("CHAOS_SEED", "7")),
    )


@pytest.mark.timeout(3600)
async def test_nothing_lost_nothing_twice_while_everything_breaks(
    zabbix_dev: DevInstance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run(tmp_path, zabbix_dev, config_from_env())
    (tmp_path / "chaos-report.json").write_text(
        json.dumps({"counts": report.counts, "details": report.details}, indent=2)
    )
    with capsys.disabled():
        print("\n" + report.table())
    assert report.counts["accepted (2xx)"] == report.counts["problems"]
    assert report.failures() == {}
