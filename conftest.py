"""Fixtures every test directory can use: real NATS, real Zabbix, the Twilio simulator.

Markers follow what a test needs, so ``make test-unit`` (no markers) never starts a server:
tests under ``tests/integration``, ``tests/e2e`` and ``tests/chaos`` carry their folder's
marker, and any test that asks for a real NATS or a real Zabbix is ``integration`` (and
``zabbix``) wherever it lives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "yobidashi_testing.nats_fixtures",
    "yobidashi_testing.zabbix_fixtures",
]

ROOT = Path(__file__).parent
FOLDER_MARKS = {
    "tests/integration": ("integration",),
    "tests/e2e": ("integration", "e2e"),
    "tests/chaos": ("integration", "chaos"),
}
SERVER_FIXTURES = {"nats_url", "nats_server", "nats_cluster"}
ZABBIX_FIXTURES = {"zabbix_dev", "zabbix_instance", "zabbix_admin"}


def marks_for(path: Path, fixtures: set[str]) -> set[str]:
    relative = path.resolve().relative_to(ROOT).as_posix()
    marks = {m for folder, ms in FOLDER_MARKS.items() if relative.startswith(folder) for m in ms}
    if fixtures & (SERVER_FIXTURES | ZABBIX_FIXTURES):
        marks.add("integration")
    if fixtures & ZABBIX_FIXTURES:
        marks.add("zabbix")
    return marks


# `make test` runs tests in parallel (pytest-xdist, --dist loadgroup): most of their time is
# spent waiting on rings, retries and Zabbix's own schedule, not on the CPU. Tests that share
# one thing run one after another in one worker: the dev Zabbix instances (some tests stop
# their frontend or server, some read its PHP log) and the devstack's usual ports.
SERIAL = "shared-zabbix-and-devstack"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    grouping = bool(config.getoption("loadgroup", False))  # set by xdist in its workers
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for mark in marks_for(item.path, fixtures):
            item.add_marker(mark)
        if grouping and {m.name for m in item.iter_markers()} & {"zabbix", "e2e", "chaos"}:
            join_group(item, SERIAL)


def join_group(item: pytest.Item, group: str) -> None:
    """What ``@pytest.mark.xdist_group`` does: xdist schedules by the node id's ``@group``
    suffix. pytest-xdist 3.8 writes that suffix to ``item._nodeid``, which pytest 9.2 no longer
    reads (node ids are structured now), so the suffix goes into the id pytest does read."""
    node_id = item._id
    item._id = type(node_id).parse(f"{node_id}@{group}")
