"""Fixtures shared by the integration tests in this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from yobidashi_harness.nats_server import NatsServer
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.commands import ingest_process


@pytest.fixture
def ingest(
    nats_server: NatsServer, tmp_path: Path, ingest_env: dict[str, str]
) -> Iterator[ServiceProcess]:
    """The real ``yobidashi-ingest`` on the test's own nats-server (which the test may stop),
    ready for alerts. A module that uses it says how ingest is set up in an ``ingest_env``
    fixture of its own: its token, and whatever else that module's tests depend on."""
    with ingest_process(nats_server.url, tmp_path, **ingest_env) as proc:
        yield proc
