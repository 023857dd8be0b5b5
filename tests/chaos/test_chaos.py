"""The chaos run: problems through a stack that keeps being broken, then the audit.

``make test`` runs a small pass (60 problems); ``make chaos`` runs 1,000
(``CHAOS_PROBLEMS``, ``CHAOS_SECONDS``, ``CHAOS_ZABBIX_OUTAGE``, ``CHAOS_SEED`` change it).
``CHAOS_CLUSTER=1`` runs it on a 3-node JetStream cluster with two replicas of each service,
with the cluster's faults too (``CHAOS_SHORT_FREEZE``, ``CHAOS_LONG_FREEZE``,
``CHAOS_ZONE_DOWN``: seconds).
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
    cluster = os.environ.get("CHAOS_CLUSTER", "0") not in ("", "0")
    short_freeze = float(os.environ.get("CHAOS_SHORT_FREEZE", "30"))
    long_freeze = float(os.environ.get("CHAOS_LONG_FREEZE", "300"))
    zone_down = float(os.environ.get("CHAOS_ZONE_DOWN", "15"))
    seconds = max(20.0, problems / 10)
    if cluster:
        # The load lasts through every cluster fault: the long freeze first, then the others.
        seconds = max(seconds, long_freeze + 3 * short_freeze + 2 * zone_down + 30)
    return ChaosConfig(
        problems=problems,
        seconds=float(os.environ.get("CHAOS_SECONDS", str(seconds))),
        zabbix_outage=float(os.environ.get("CHAOS_ZABBIX_OUTAGE", "20")),
        seed=int(os.environ.get("CHAOS_SEED", "7")),
        cluster=cluster,
        short_freeze=short_freeze,
        long_freeze=long_freeze,
        zone_down=zone_down,
    )


@pytest.mark.timeout(3600)
async def test_nothing_lost_nothing_twice_while_everything_breaks(
    zabbix_dev: DevInstance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run(tmp_path, zabbix_dev, config_from_env())
    (tmp_path / "chaos-report.json").write_text(
        json.dumps(
            {"counts": report.counts, "figures": report.figures, "details": report.details},
            indent=2,
            ensure_ascii=False,
        )
    )
    with capsys.disabled():
        print("\n" + report.table())
    assert report.counts["accepted (2xx)"] == report.counts["problems"]
    assert report.failures() == {}
