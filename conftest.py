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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for mark in marks_for(item.path, fixtures):
            item.add_marker(mark)
