"""The services on a 3-node JetStream cluster, as production runs them: every node's URL in
``NATS_URL``, ``NATS_STREAM_REPLICAS=3``, ingest as its real process.

Nodes are killed (kill -9), and frozen (SIGSTOP: a hung node whose sockets stay open), chosen
by role from the servers' monitoring: the stream's leader, or the node ingest is connected to.
What is delivered is read by a durable pull consumer on the alerts stream, the dialer's kind
(`yobidashi_common.bus.Consumer`), in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from yobidashi_acker.acks import ACKS_BUCKET, CONSUMER
from yobidashi_common.bus import Bus, Consumer, ConsumerSpec, Delivery
from yobidashi_common.events import AlertEvent
from yobidashi_common.settings import NatsSettings
from yobidashi_common.subjects import ALERTS_ALL, ALERTS_STREAM, shared_streams
from yobidashi_dialer.store import BUNDLES, CALLS, DIALER_STREAM, INCIDENTS, LIMITS
from yobidashi_harness import payloads
from yobidashi_harness.nats_cluster import NatsCluster
from yobidashi_harness.nats_server import NatsServer, free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.nats_fixtures import tolerates_socket_left_by_a_reconnect
from yobidashi_testing.stack import dialer_process, eventually, simulator

pytestmark = pytest.mark.integration

TOKEN = "cluster-test-token-abcdefgh"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INGEST = "yobidashi-ingest"  # the NATS connection name ingest gives itself


def cluster_env(cluster: NatsCluster) -> dict[str, str]:
    return {"NATS_URL": cluster.urls, "NATS_STREAM_REPLICAS": "3"}


@pytest.fixture
def ingest(nats_cluster: NatsCluster, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {**cluster_env(nats_cluster), "INGEST_TOKEN": TOKEN}
    proc = ServiceProcess("yobidashi-ingest", env, tmp_path / "ingest.log").start()
    proc.wait_ready()
    yield proc
    proc.stop()


class AlertsSeen:
    """What the consumer got, in order: each event id with what ``note()`` said at that moment
    (set by a test, e.g. whether a node was still frozen)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.got: list[tuple[str, Any]] = []
        self.note: Callable[[], Any] = lambda: None

    async def handle(self, delivery: Delivery[AlertEvent]) -> None:
        self.got.append((delivery.event.source_event_id, self.note()))

    def ids(self) -> list[str]:
        return [event_id for event_id, _ in self.got]

    async def wait_for(self, event_id: str) -> None:
        async def arrived() -> bool:
            return event_id in self.ids()

        await eventually(arrived, f"alert {event_id} to be delivered")

    async def stored_ids(self) -> list[str]:
        """The event id of every alert on the stream, in order: what Zabbix's retries left."""
        js = self.bus.js
        info = await js.stream_info(ALERTS_STREAM)
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(ALERTS_STREAM, seq)
            assert msg.data is not None
            ids.append(AlertEvent.model_validate_json(msg.data).source_event_id)
        return ids


@asynccontextmanager
async def alerts_consumer(cluster: NatsCluster) -> AsyncIterator[AlertsSeen]:
    settings = NatsSettings.model_validate({"nats_url": cluster.urls, "nats_stream_replicas": 3})
    bus = Bus(settings, "cluster-test-consumer", streams=shared_streams(settings))
    seen = AlertsSeen(bus)
    spec = ConsumerSpec(ALERTS_STREAM, "cluster-test-alerts", [ALERTS_ALL])
    consumer = Consumer(bus, spec, AlertEvent, seen.handle)
    await bus.start()
    await asyncio.wait_for(bus.wait_ready(), 60)
    consumer.start()
    try:
        yield seen
    finally:
        await consumer.stop(grace=2)
        await bus.close()


async def post(http: httpx.AsyncClient, ingest: ServiceProcess, event_id: int) -> httpx.Response:
    return await http.post(
        f"{ingest.url}/v1/zabbix", json=payloads.problem(event_id=event_id), headers=AUTH
    )


async def post_until_accepted(
    http: httpx.AsyncClient, ingest: ServiceProcess, event_id: int
) -> list[int]:
    """What Zabbix does with a 503, faster: send the same webhook again until it gets a 2xx.
    Returns every status it got, the 202 last."""
    statuses: list[int] = []

    async def accepted() -> bool:
        statuses.append((await post(http, ingest, event_id)).status_code)
        if statuses[-1] != 202:
            await asyncio.sleep(0.2)
        return statuses[-1] == 202

    await eventually(accepted, f"ingest to accept alert {event_id}")
    return statuses


async def node_of_ingest(cluster: NatsCluster) -> NatsServer | None:
    return await asyncio.to_thread(cluster.node_of_client, INGEST)


# -- replicas -------------------------------------------------------------------------------------


def acker_env(cluster: NatsCluster) -> dict[str, str]:
    """The acker with a Zabbix that is nowhere: it only has to create its bucket and consumer."""
    return {
        **cluster_env(cluster),
        "ZABBIX_URL": f"http://127.0.0.1:{free_port()}",
        "ZABBIX_API_TOKEN": "not-a-real-token-0123456789",
        "ZABBIX_PROBE_INTERVAL": "0",
    }


async def test_every_stream_bucket_and_durable_consumer_has_three_replicas(
    nats_cluster: NatsCluster, ingest: ServiceProcess, tmp_path: Path
) -> None:
    """Ingest, the dialer and the acker each create what they use; all of it is R3."""
    settings = NatsSettings.model_validate({"nats_stream_replicas": 3})
    streams = {spec.name for spec in shared_streams(settings)} | {DIALER_STREAM}
    buckets = {spec.name for spec in (INCIDENTS, CALLS, LIMITS, BUNDLES)} | {ACKS_BUCKET}
    expected = streams | {f"KV_{bucket}" for bucket in buckets}
    durables = {"dialer-alerts", "dialer-dials", CONSUMER}
    acker = ServiceProcess("yobidashi-acker", acker_env(nats_cluster), tmp_path / "acker.log")
    # A plain client that ensures nothing itself: what it reads, the services made.
    async with simulator() as sim, await nats.connect(nats_cluster.url_list) as nc:
        dialer = dialer_process(
            nats_cluster.urls, sim, tmp_path / "dialer.log", NATS_STREAM_REPLICAS="3"
        )
        with dialer, acker:
            dialer.wait_ready()
            acker.wait_ready()
            js = nc.jetstream()

            async def everything_created() -> dict[str, Any] | None:
                infos = {str(info.config.name): info for info in await js.streams_info()}
                consumers = {c.name: c for name in infos for c in await js.consumers_info(name)}
                if expected <= set(infos) and durables <= set(consumers):
                    return {"streams": infos, "consumers": consumers}
                return None

            found = await eventually(everything_created, "every stream, bucket and consumer")
    streams_found, consumers_found = found["streams"], found["consumers"]
    replicas = {name: info.config.num_replicas for name, info in streams_found.items()}
    assert replicas == dict.fromkeys(streams_found, 3)
    # Durable consumers only: a KV watch (the overrides book) is an ordered, ephemeral consumer
    # that the server keeps on one node by design, and the watcher recreates it.
    durable = [(name, info) for name, info in consumers_found.items() if name in durables]
    assert {name for name, _ in durable} == durables
    for name, info in [*streams_found.items(), *durable]:
        assert info.cluster is not None, name
        assert info.cluster.leader in {node.name for node in nats_cluster.nodes}, name
        assert len(info.cluster.replicas or []) == 2, f"{name}: a leader and two replicas"


# -- a node down ----------------------------------------------------------------------------------


def alerts_node(cluster: NatsCluster, role: str) -> NatsServer:
    """The alerts stream's leader, or one of its followers."""
    leader = cluster.wait_stream_leader(ALERTS_STREAM)
    if role == "stream leader":
        return leader
    return next(node for node in cluster.nodes if node is not leader)


@pytest.mark.parametrize("victim_role", ["follower", "stream leader"])
async def test_an_alert_accepted_while_a_node_is_down_is_delivered(
    nats_cluster: NatsCluster, ingest: ServiceProcess, victim_role: str
) -> None:
    cluster = nats_cluster
    async with alerts_consumer(cluster) as seen, httpx.AsyncClient(timeout=30) as http:
        assert await post_until_accepted(http, ingest, 9101) == [202]
        await seen.wait_for("9101")
        victim = await asyncio.to_thread(alerts_node, cluster, victim_role)
        seen.note = lambda: victim.running

        victim.kill()
        statuses = await post_until_accepted(http, ingest, 9102)
        await seen.wait_for("9102")
        stored = await seen.stored_ids()
        victim.start()
        await asyncio.to_thread(cluster.wait_healthy)
    assert set(statuses) <= {503, 202}, "a 503 while a new leader is elected, then a 202"
    assert seen.got == [("9101", None), ("9102", False)], "delivered while the node was down"
    assert stored == ["9101", "9102"]


# -- no quorum ------------------------------------------------------------------------------------


@pytest.mark.parametrize("survivor_role", ["stream leader", "follower"])
async def test_without_quorum_ingest_answers_503_and_the_retry_is_stored_once(
    nats_cluster: NatsCluster, ingest: ServiceProcess, survivor_role: str
) -> None:
    """Two of three nodes down: JetStream cannot store anything. Every webhook gets 503 with
    Retry-After; once a quorum is back Zabbix's retry gets 202, and the alert is on the stream
    once, however much of the 503'd attempts the lone node had taken in (see the bus tests:
    a lone leader may commit its pending copy later, and the retry is then a duplicate)."""
    cluster = nats_cluster
    async with alerts_consumer(cluster) as seen, httpx.AsyncClient(timeout=30) as http:
        assert await post_until_accepted(http, ingest, 9201) == [202]
        await seen.wait_for("9201")
        survivor = await asyncio.to_thread(alerts_node, cluster, survivor_role)
        down = [node for node in cluster.nodes if node is not survivor]
        for node in down:
            node.kill()

        async def ingest_on_survivor() -> bool:
            return await node_of_ingest(cluster) is survivor

        # Only then do the 503s come from JetStream itself, not from a reconnecting client.
        await eventually(ingest_on_survivor, "ingest to reconnect to the surviving node")
        refused = [await post(http, ingest, 9202) for _ in range(3)]

        down[0].start()
        statuses = await post_until_accepted(http, ingest, 9202)
        down[1].start()
        await asyncio.to_thread(cluster.wait_healthy)
        await seen.wait_for("9202")
        stored = await seen.stored_ids()
    assert [r.status_code for r in refused] == [503, 503, 503]
    assert all(r.headers.get("retry-after") for r in refused)
    assert {r.json()["error"] for r in refused} == {"unavailable"}
    assert set(statuses) <= {503, 202}, f"never a 500 or another 2xx: {statuses}"
    assert stored == ["9201", "9202"], "the 503'd alert is stored once, by the retry or before"


# -- a frozen node --------------------------------------------------------------------------------


@tolerates_socket_left_by_a_reconnect
async def test_a_frozen_node_is_left_and_alerts_flow_while_it_stays_frozen(
    nats_cluster: NatsCluster, ingest: ServiceProcess
) -> None:
    """SIGSTOP the node that ingest is connected to, which also leads the alerts stream and
    the consumer: ingest must move to a healthy node, and an alert posted meanwhile must be
    accepted and delivered while that node is still frozen (nats-py's default keep-alive kept
    ingest on it for minutes, answering 503)."""
    cluster = nats_cluster
    async with alerts_consumer(cluster) as seen, httpx.AsyncClient(timeout=30) as http:
        assert await post_until_accepted(http, ingest, 9301) == [202]
        await seen.wait_for("9301")
        victim = await node_of_ingest(cluster)
        assert victim is not None
        await cluster.move_stream_leader(ALERTS_STREAM, victim)
        await cluster.move_consumer_leader(ALERTS_STREAM, "cluster-test-alerts", victim)
        seen.note = lambda: victim.frozen

        with cluster.frozen(victim):
            statuses = await post_until_accepted(http, ingest, 9302)
            await seen.wait_for("9302")
            # Only answering nodes are asked, so any node found is a healthy one.
            moved_to = await eventually(lambda: node_of_ingest(cluster), "ingest on a healthy node")
            still_frozen = victim.frozen
        await asyncio.to_thread(cluster.wait_healthy)
    assert still_frozen
    assert moved_to is not victim
    assert set(statuses) <= {503, 202}
    assert seen.got == [("9301", None), ("9302", True)], "delivered before the thaw"
