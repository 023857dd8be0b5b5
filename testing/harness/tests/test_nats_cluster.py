"""The 3-node cluster helper itself: leaders read from monitoring, faults, stores kept."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import ConsumerConfig, StreamConfig

from yobidashi_harness.nats_cluster import NatsCluster

pytestmark = pytest.mark.integration

STREAM = "HARNESS"


async def r3_stream_with(cluster: NatsCluster, messages: int) -> None:
    async with await nats.connect(cluster.url_list) as nc:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=STREAM, subjects=["h.>"], num_replicas=3))
        await js.add_consumer(STREAM, ConsumerConfig(durable_name="reader"))
        for n in range(messages):
            await js.publish("h.x", str(n).encode())


async def stored(cluster: NatsCluster) -> int:
    async with await nats.connect(cluster.url_list) as nc:
        return int((await nc.jetstream().stream_info(STREAM)).state.messages)


async def test_leaders_are_read_from_the_nodes_that_claim_them(nats_cluster: NatsCluster) -> None:
    cluster = nats_cluster
    await r3_stream_with(cluster, 1)
    assert cluster.urls.count(",") == 2
    meta = cluster.meta_leader()
    stream_leader = await asyncio.to_thread(cluster.wait_stream_leader, STREAM)
    consumer_leader = cluster.consumer_leader(STREAM, "reader")
    assert meta in cluster.nodes
    assert stream_leader in cluster.nodes
    assert consumer_leader in cluster.nodes

    for target in cluster.nodes:
        await cluster.move_stream_leader(STREAM, target)
        assert cluster.stream_leader(STREAM) is target
    await cluster.move_consumer_leader(STREAM, "reader", cluster.nodes[0])
    assert cluster.consumer_leader(STREAM, "reader") is cluster.nodes[0]


async def test_a_killed_leader_is_replaced_and_comes_back_with_its_store(
    nats_cluster: NatsCluster,
) -> None:
    cluster = nats_cluster
    await r3_stream_with(cluster, 5)
    leader = await asyncio.to_thread(cluster.wait_stream_leader, STREAM)
    leader.kill()
    successor = await asyncio.to_thread(cluster.wait_stream_leader, STREAM)
    assert successor is not leader
    assert not leader.running

    leader.start()
    await asyncio.to_thread(cluster.wait_healthy)
    for node in cluster.nodes:  # every store at once: only what the disks kept comes back
        node.stop()
    for node in cluster.nodes:
        node.start()
    await asyncio.to_thread(cluster.wait_healthy)
    assert await stored(cluster) == 5


async def test_a_frozen_meta_leader_is_skipped_and_rejoins_after_thawing(
    nats_cluster: NatsCluster,
) -> None:
    cluster = nats_cluster
    leader = cluster.meta_leader()
    assert leader is not None
    with cluster.frozen(leader):
        while_frozen = (leader.frozen, leader.running, leader in cluster.answering())
        successor = await asyncio.to_thread(cluster.wait_meta_leader)
    assert while_frozen == (True, True, False)
    assert successor is not leader
    await asyncio.to_thread(cluster.wait_healthy)
    assert (leader.frozen, leader in cluster.answering()) == (False, True)
