"""The bus helper against a real nats-server: dedup, acks, retries, dead letters, KV, auth, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pydantic
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from prometheus_client import REGISTRY

from yobidashi_common.bus import (
    Bus,
    BusUnavailable,
    Consumer,
    ConsumerSpec,
    Delivery,
    KvStore,
    Reject,
    RetryLater,
    connect_options,
    ensure_stream,
    kv_key,
)
from yobidashi_common.events import Contract
from yobidashi_common.settings import NatsSettings
from yobidashi_common.subjects import BucketSpec, StreamSpec
from yobidashi_harness.nats_cluster import NatsCluster
from yobidashi_harness.nats_server import NatsServer, find_nats_server
from yobidashi_harness.tls import make_tls_files
from yobidashi_testing.nats_fixtures import tolerates_socket_left_by_a_reconnect

pytestmark = pytest.mark.integration

STREAM = StreamSpec("T_EVENTS", ["t.>"], max_age=3600, duplicate_window=60)
BUCKET = BucketSpec("t_state", "test state")


class Ping(Contract):
    n: int


class Note(pydantic.BaseModel):
    n: int


def settings(url: str, **kw: object) -> NatsSettings:
    return NatsSettings.model_validate({"nats_url": url, "nats_publish_timeout": 1, **kw})


@asynccontextmanager
async def connected(url: str, name: str = "test", **kw: object) -> AsyncIterator[Bus]:
    bus = Bus(settings(url, **kw), name, streams=[STREAM], buckets=[BUCKET])
    await bus.start()
    await asyncio.wait_for(bus.wait_ready(), 20)
    try:
        yield bus
    finally:
        await bus.close()


@asynccontextmanager
async def consuming(
    bus: Bus, handler: Callable[[Delivery[Ping]], Awaitable[None]], **spec: object
) -> AsyncIterator[Consumer[Ping]]:
    params: dict[str, object] = {
        "stream": "T_EVENTS",
        "durable": "tester",
        "subjects": ["t.>"],
        "retry_backoff": (0.1,),
        **spec,
    }
    consumer = Consumer(bus, ConsumerSpec(**params), Ping, handler)  # type: ignore[arg-type]
    consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop(grace=5)


async def eventually(check: Callable[[], bool], timeout: float = 15, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)
    assert check(), what


def dead_lettered_by(consumer: str) -> float:
    value = REGISTRY.get_sample_value("yobidashi_bus_dead_letters_total", {"consumer": consumer})
    return value or 0.0


async def dead_letters(url: str) -> list[Msg]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("yobidashi.dlq.v1.>", stream="YOBIDASHI_DLQ")
        try:
            return list(await sub.fetch(50, timeout=1))
        except nats.errors.TimeoutError:
            return []
    finally:
        await nc.close()


async def test_publish_stores_once_per_msg_id(nats_url: str) -> None:
    async with connected(nats_url) as bus:
        first = await bus.publish("t.a", Ping(n=1), msg_id="one")
        again = await bus.publish("t.a", Ping(n=1), msg_id="one")
        other = await bus.publish("t.a", Ping(n=2), msg_id="two")
        info = await bus.js.stream_info("T_EVENTS")
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.seq == first.seq
    assert info.state.messages == 2


async def test_publish_while_disconnected_fails_fast(nats_server: NatsServer) -> None:
    async with connected(nats_server.url) as bus:
        nats_server.stop()
        await eventually(lambda: not bus.ready, what="bus noticed the outage")
        with pytest.raises(BusUnavailable):
            await bus.publish("t.a", Ping(n=1), msg_id="x")


async def test_consumer_acks_what_it_handled(nats_url: str) -> None:
    seen: list[int] = []

    async def handler(d: Delivery[Ping]) -> None:
        seen.append(d.event.n)

    async with connected(nats_url) as bus, consuming(bus, handler):
        for n in range(5):
            await bus.publish("t.a", Ping(n=n), msg_id=str(n))
        await eventually(lambda: len(seen) == 5)

        async def all_acked() -> bool:
            info = await bus.js.consumer_info("T_EVENTS", "tester")
            return bool(info.num_ack_pending == 0 and info.num_pending == 0)

        async with asyncio.timeout(15):
            while not await all_acked():
                await asyncio.sleep(0.02)
    assert sorted(seen) == [0, 1, 2, 3, 4]


async def test_retry_later_naks_and_the_message_comes_back(nats_url: str) -> None:
    deliveries: list[int] = []

    async def handler(d: Delivery[Ping]) -> None:
        deliveries.append(d.deliveries)
        if d.deliveries < 3:
            raise RetryLater("not yet", delay=0.1)

    async with connected(nats_url) as bus, consuming(bus, handler):
        await bus.publish("t.a", Ping(n=1), msg_id="r")
        await eventually(lambda: deliveries == [1, 2, 3])


async def test_failing_handler_is_dead_lettered_after_max_deliveries(nats_url: str) -> None:
    calls: list[int] = []
    before = dead_lettered_by("tester")

    async def handler(d: Delivery[Ping]) -> None:
        calls.append(d.deliveries)
        raise ValueError("boom")

    async with connected(nats_url) as bus, consuming(bus, handler, max_deliveries=3):
        await bus.publish("t.poison", Ping(n=7), msg_id="p")
        # Dead-lettered after the third failure, and so never delivered a fourth time.
        await eventually(lambda: dead_lettered_by("tester") == before + 1)
    assert calls == [1, 2, 3]
    [dead] = await dead_letters(nats_url)
    assert dead.subject == "yobidashi.dlq.v1.tester"
    assert dead.headers is not None
    assert dead.headers["Yobidashi-Dlq-Subject"] == "t.poison"
    assert "ValueError: boom" in dead.headers["Yobidashi-Dlq-Reason"]
    assert Ping.model_validate_json(dead.data).n == 7


async def test_undecodable_and_rejected_messages_go_straight_to_dead_letters(
    nats_url: str,
) -> None:
    calls: list[int] = []

    async def handler(d: Delivery[Ping]) -> None:
        calls.append(d.event.n)
        raise Reject("unknown problem")

    async with connected(nats_url) as bus, consuming(bus, handler):
        await bus.js.publish("t.garbage", b"{not json")
        await bus.publish("t.rejected", Ping(n=3), msg_id="rej")
        await eventually(lambda: calls == [3])
        await asyncio.sleep(0.5)
    dead = await dead_letters(nats_url)
    reasons = sorted((m.headers or {})["Yobidashi-Dlq-Reason"][:16] for m in dead)
    assert reasons == ["undecodable Ping", "unknown problem"]


async def test_slow_handler_is_not_redelivered_while_it_works(nats_url: str) -> None:
    deliveries: list[int] = []

    async def handler(d: Delivery[Ping]) -> None:
        deliveries.append(d.deliveries)
        await asyncio.sleep(3.5)  # far beyond ack_wait; in_progress keeps it ours

    async with connected(nats_url) as bus, consuming(bus, handler, ack_wait=1.0):
        await bus.publish("t.slow", Ping(n=1), msg_id="slow")
        await eventually(lambda: len(deliveries) == 1)
        await asyncio.sleep(4)
    assert deliveries == [1]


async def test_stop_lets_in_flight_work_finish_and_ack(nats_url: str) -> None:
    finished: list[int] = []

    async def handler(d: Delivery[Ping]) -> None:
        await asyncio.sleep(0.5)
        finished.append(d.event.n)

    async with connected(nats_url) as bus:
        consumer = Consumer(bus, ConsumerSpec("T_EVENTS", "drainer", ["t.>"]), Ping, handler)
        consumer.start()
        await bus.publish("t.a", Ping(n=1), msg_id="d1")
        await asyncio.sleep(0.2)
        await consumer.stop(grace=5)
        info = await bus.js.consumer_info("T_EVENTS", "drainer")
    assert finished == [1]
    assert info.num_ack_pending == 0


async def test_consumer_keeps_going_after_nats_restarts(nats_server: NatsServer) -> None:
    seen: list[int] = []

    async def handler(d: Delivery[Ping]) -> None:
        seen.append(d.event.n)

    async with connected(nats_server.url) as bus, consuming(bus, handler):
        await bus.publish("t.a", Ping(n=1), msg_id="before")
        await eventually(lambda: seen == [1])
        nats_server.restart()
        await publish_until_stored(bus, Ping(n=2), "after")
        await eventually(lambda: seen == [1, 2], timeout=30)


async def publish_until_stored(bus: Bus, event: Ping, msg_id: str) -> None:
    """What ingest's callers (Zabbix) do: retry a 503 with the same id until it is stored."""
    for _ in range(300):
        try:
            await bus.publish("t.a", event, msg_id=msg_id)
            return
        except BusUnavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("never stored after NATS came back")


async def test_streams_are_recreated_when_a_server_comes_back_empty(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with connected(nats_server.url) as bus:
        nats_server.stop()
        for item in nats_server.store_dir.iterdir():
            shutil.rmtree(item)
        nats_server.start()

        async def has_stream() -> bool:
            try:
                await asyncio.wait_for(bus.js.stream_info("T_EVENTS"), 0.5)
                return True
            except (nats.js.errors.NotFoundError, nats.errors.Error, TimeoutError):
                return False

        for _ in range(300):
            if await has_stream():
                break
            await asyncio.sleep(0.1)
        assert await has_stream(), "the bus recreates its streams on reconnect"


async def test_ensure_is_idempotent_and_applies_changed_settings(nats_url: str) -> None:
    async with connected(nats_url) as bus:
        await bus.ensure()
        await ensure_stream(bus.js, STREAM, 1)
        longer = StreamSpec("T_EVENTS", ["t.>"], max_age=7200, duplicate_window=60)
        await ensure_stream(bus.js, longer, 1)
        config: StreamConfig = (await bus.js.stream_info("T_EVENTS")).config
    assert config.max_age == 7200
    assert config.duplicate_window == 60


async def test_kv_store_compare_and_set(nats_url: str) -> None:
    async with connected(nats_url) as bus:
        store = KvStore(bus, "t_state", Ping)
        assert await store.get("k") is None
        rev = await store.create("k", Ping(n=1))
        assert rev is not None
        assert await store.create("k", Ping(n=9)) is None
        assert await store.update("k", Ping(n=2), rev) is not None
        assert await store.update("k", Ping(n=3), rev) is None  # stale revision
        current = await store.get("k")
        assert current is not None
        assert current[0].n == 2

        async def bump() -> None:
            await store.mutate("counter", lambda p: Ping(n=(p.n if p else 0) + 1))

        await asyncio.gather(*(bump() for _ in range(20)))
        counted = await store.get("counter")
        assert counted is not None
        assert counted[0].n == 20
        unchanged = await store.mutate("counter", lambda p: None)
        assert unchanged is not None
        assert unchanged.n == 20


async def test_mutate_starts_from_what_it_last_saw_and_never_writes_on_a_stale_guess(
    nats_url: str,
) -> None:
    """Two replicas' stores on one key: each write starts from its own last view, and a view
    another replica made stale costs a failed compare-and-set and a read, never a lost write."""

    def requests() -> float:
        return sum(
            REGISTRY.get_sample_value("yobidashi_bus_jetstream_requests_total", {"operation": op})
            or 0.0
            for op in ("kv_get", "kv_create", "kv_update")
        )

    def bump(p: Ping | None) -> Ping:
        return Ping(n=(p.n if p else 0) + 1)

    async with connected(nats_url) as bus:
        one, two = KvStore(bus, "t_state", Ping), KvStore(bus, "t_state", Ping)
        await one.delete("guess")
        await one.mutate("guess", bump)  # read (absent), create
        before = requests()
        await one.mutate("guess", bump)  # from its own last write: one update, no read
        assert requests() - before == 1
        await two.mutate("guess", bump)  # two has never seen it: read, update
        before = requests()
        await one.mutate("guess", bump)  # stale: a refused update, a read, an update
        assert requests() - before == 3
        stored = await two.get("guess")
        assert stored is not None
        assert stored[0].n == 4

        # A decision to leave the value as it is is never taken on a stale view.
        await two.mutate("guess", bump)  # n = 5, one's view still says 4
        seen: list[int] = []

        def keep_if_five(p: Ping | None) -> Ping | None:
            assert p is not None
            seen.append(p.n)
            return None if p.n == 5 else Ping(n=99)

        assert (await one.mutate("guess", keep_if_five)) == Ping(n=5)
        assert seen == [4, 5]  # the guess said 4 (would write 99); the fresh read said 5

        # Changing a (mutable) model a caller was handed does not change what the store
        # remembers: the next write still starts from what was stored.
        notes = KvStore(bus, "t_state", Note)
        handed = await notes.get("guess")
        assert handed is not None
        handed[0].n = 1000
        assert (await notes.mutate("guess", lambda p: Note(n=(p.n if p else 0) + 1))) == Note(n=6)


async def test_a_bucket_not_made_yet_is_unavailable_not_an_error(nats_url: str) -> None:
    """Just after a service starts, its buckets may not exist yet: callers answer 503."""
    async with connected(nats_url) as bus:
        with pytest.raises(BusUnavailable):
            await bus.kv("t_never_made")


async def test_every_jetstream_request_is_counted_once_by_operation(nats_url: str) -> None:
    """bench.round_trips reads requests per call off this counter: each KV call and publish is
    one request, a failed compare-and-set included (it cost a round trip too)."""

    def counted() -> dict[str, float]:
        ops = ("publish", "kv_get", "kv_create", "kv_update", "kv_put", "kv_delete")
        return {
            op: REGISTRY.get_sample_value(
                "yobidashi_bus_jetstream_requests_total", {"operation": op}
            )
            or 0.0
            for op in ops
        }

    async with connected(nats_url) as bus:
        store = KvStore(bus, "t_state", Ping)
        await store.delete("c")
        before = counted()
        rev = await store.create("c", Ping(n=1))
        assert rev is not None
        assert await store.create("c", Ping(n=2)) is None
        assert await store.update("c", Ping(n=3), rev) is not None
        await store.get("c")
        await store.put("c", Ping(n=4))
        await store.delete("c")
        await bus.publish("t.events.counted", Ping(n=5), msg_id="counted-1")
        after = counted()
    assert {op: after[op] - before[op] for op in after} == {
        "publish": 1,
        "kv_get": 1,
        "kv_create": 2,
        "kv_update": 1,
        "kv_put": 1,
        "kv_delete": 1,
    }


async def test_kv_store_recent_lists_a_key_rewritten_while_it_reads(nats_url: str) -> None:
    """The dialer's incident list once came back empty under load: the one incident was
    rewritten between reading the stream's last sequence and the message there, so its value
    had moved above the scan and was gone below it."""
    async with connected(nats_url) as bus:
        store = KvStore(bus, "t_busy", Ping)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await bus.js.delete_key_value("t_busy")
        await bus.js.create_key_value(bucket="t_busy", history=1)
        await store.put("only", Ping(n=1))
        js = bus.js
        original = js.get_msg
        rewrites: list[int] = []

        async def rewritten_first(*args: Any, **kwargs: Any) -> Any:
            if not rewrites:
                rewrites.append(await store.put("only", Ping(n=2)))  # a writer, mid-scan
            return await original(*args, **kwargs)

        js.get_msg = rewritten_first  # type: ignore[method-assign]
        try:
            assert [p.n for p in await store.recent(5)] == [2]
        finally:
            js.get_msg = original  # type: ignore[method-assign]
        assert rewrites


async def test_kv_store_recent_lists_the_last_written_keys_newest_first(nats_url: str) -> None:
    async with connected(nats_url) as bus:
        store = KvStore(bus, "t_state", Ping)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await bus.js.delete_key_value("t_fresh")
        await bus.js.create_key_value(bucket="t_fresh")
        assert await KvStore(bus, "t_fresh", Ping).recent(3) == []  # no sequence 0 to read
        for key in ("r1", "r2", "r3", "r4"):
            await store.put(key, Ping(n=int(key[1])))
        await store.put("r2", Ping(n=22))  # rewritten: now the newest
        await store.delete("r4")
        assert [p.n for p in await store.recent(3)] == [22, 3, 1]
        assert [p.n for p in await store.recent(1)] == [22]


async def test_kv_store_keys_lists_every_key_under_a_prefix_in_one_request(nats_url: str) -> None:
    async with connected(nats_url) as bus:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await bus.js.delete_key_value("t_keys")
        await bus.js.create_key_value(bucket="t_keys", history=3)
        store = KvStore(bus, "t_keys", Ping)
        assert await store.keys() == []
        for n in range(40):
            await store.put(kv_key("contact", f"c{n:02d}"), Ping(n=n))
        await store.put(kv_key("attempt", "a1"), Ping(n=-1))
        await store.put(kv_key("contact", "c07"), Ping(n=70))  # rewritten: still one key
        await store.delete(kv_key("contact", "c03"))
        counted = {"operation": "stream_info"}
        before = REGISTRY.get_sample_value("yobidashi_bus_jetstream_requests_total", counted) or 0
        listed = await store.keys("contact.")
        after = REGISTRY.get_sample_value("yobidashi_bus_jetstream_requests_total", counted)
        assert after == before + 1
        assert listed == [f"contact.c{n:02d}" for n in range(40)], "c03 listed, its get is None"
        assert await store.get("contact.c03") is None
        assert await store.keys("attempt.") == ["attempt.a1"]
        assert len(await store.keys()) == 41


async def test_kv_store_offers_its_own_recent_view_and_nothing_older(nats_url: str) -> None:
    async with connected(nats_url) as bus:
        mine, other = KvStore(bus, "t_state", Ping), KvStore(bus, "t_state", Ping)
        await mine.put("own", Ping(n=1))
        assert mine.seen_within("own", 60) == Ping(n=1)
        assert other.seen_within("own", 60) is None, "only what this store read or wrote"
        await other.put("own", Ping(n=2))
        # Another writer's change is not in the view until this store reads again.
        assert mine.seen_within("own", 60) == Ping(n=1)
        assert await mine.get("own") == (Ping(n=2), mine.last_revision("own"))
        assert mine.seen_within("own", 60) == Ping(n=2)
        await asyncio.sleep(0.05)
        assert mine.seen_within("own", 0.01) is None, "older than asked for"
        await mine.delete("own")
        assert mine.seen_within("own", 60) is None


def test_kv_key_escapes_what_nats_forbids() -> None:
    assert kv_key("zabbix:17", "+819012345678") == "zabbix=3A17.=2B819012345678"
    assert kv_key("a b", "ok_-=/") == "a=20b.ok_-=3D/"


@given(
    st.lists(st.text(max_size=8), min_size=1, max_size=3),
    st.lists(st.text(max_size=8), min_size=1, max_size=3),
)
def test_kv_key_never_gives_two_different_keys_one_name(a: list[str], b: list[str]) -> None:
    assume(a != b)
    assert kv_key(*a) != kv_key(*b)


def test_connect_options_carry_each_credential_kind(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    options = connect_options(
        settings(
            "nats://a:4222, nats://b:4222",
            nats_token="t0ken-secret",
            nats_user="svc",
            nats_password="pw-secret",
            nats_creds=str(creds),
        )
    )
    assert options["servers"] == ["nats://a:4222", "nats://b:4222"]
    assert options["token"] == "t0ken-secret"
    assert options["user"] == "svc"
    assert options["password"] == "pw-secret"
    assert options["user_credentials"] == str(creds)
    assert options["max_reconnect_attempts"] == -1
    assert "tls" not in options


def test_connect_options_leave_a_hung_server_within_seconds() -> None:
    defaults = connect_options(settings("nats://a:4222"))
    # nats-py's own defaults (120 s, 2) stay on a frozen server for up to six minutes.
    assert (defaults["ping_interval"], defaults["max_outstanding_pings"]) == (2.0, 2)
    assert defaults["connect_timeout"] == 2.0
    tuned = connect_options(
        settings(
            "nats://a:4222",
            nats_ping_interval="500ms",
            nats_max_outstanding_pings=4,
            nats_connect_timeout="5s",
        )
    )
    assert (tuned["ping_interval"], tuned["max_outstanding_pings"]) == (0.5, 4)
    assert tuned["connect_timeout"] == 5.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nats_ping_interval", "0"),
        ("nats_max_outstanding_pings", "0"),
        ("nats_connect_timeout", "0s"),
    ],
)
def test_keepalive_settings_refuse_values_that_never_notice_anything(
    field: str, value: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        settings("nats://a:4222", **{field: value})


@pytest.fixture
def binary() -> str:
    found = find_nats_server()
    if found is None:
        pytest.skip("no nats-server binary in this environment (make venv)")
    return found


async def test_token_auth(binary: str) -> None:
    with NatsServer(binary, extra_args=["--auth", "s3cret-token-value"]) as server:
        async with connected(server.url, nats_token="s3cret-token-value") as bus:
            assert bus.ready
        wrong = Bus(settings(server.url, nats_token="nope-wrong"), "t", streams=[STREAM])
        await wrong.start()
        await asyncio.sleep(1.5)
        assert not wrong.ready
        await wrong.close()


async def test_user_and_password_auth(binary: str) -> None:
    with NatsServer(binary, extra_args=["--user", "svc", "--pass", "pw-123456"]) as server:
        async with connected(server.url, nats_user="svc", nats_password="pw-123456") as bus:
            assert bus.ready


async def test_tls_with_a_custom_ca(binary: str, tmp_path: Path) -> None:
    ca, crt, key = make_tls_files(tmp_path)
    args = ["--tls", "--tlscert", str(crt), "--tlskey", str(key)]
    with NatsServer(binary, extra_args=args) as server:
        url = f"tls://127.0.0.1:{server.port}"
        async with connected(url, nats_tls_ca=str(ca)) as bus:
            assert bus.ready
            await bus.publish("t.a", Ping(n=1), msg_id="tls")
        untrusted = Bus(settings(url), "t", streams=[STREAM])
        await untrusted.start()
        await asyncio.sleep(1.5)
        assert not untrusted.ready, "a server cert from an unknown CA must be refused"
        await untrusted.close()


# -- on a 3-node cluster --------------------------------------------------------------------------


def node_of(cluster: NatsCluster, bus: Bus) -> NatsServer | None:
    url = bus.nc.connected_url
    return cluster.node_at(url.netloc) if bus.ready and url is not None else None


@tolerates_socket_left_by_a_reconnect
async def test_a_bus_on_a_frozen_node_moves_to_a_healthy_one_and_keeps_consuming(
    nats_cluster: NatsCluster,
) -> None:
    """SIGSTOP the node a consumer is on: it must leave within seconds (pings, not TCP, tell),
    and what is published meanwhile must reach it while that node is still frozen."""
    cluster = nats_cluster
    seen: list[tuple[int, bool]] = []
    async with (
        connected(cluster.urls, "consumer-side", nats_stream_replicas=3) as bus,
        connected(cluster.urls, "publisher", nats_stream_replicas=3) as publisher,
    ):
        victim = node_of(cluster, bus)
        assert victim is not None

        async def handler(d: Delivery[Ping]) -> None:
            seen.append((d.event.n, victim.frozen))

        async with consuming(bus, handler):
            await publisher.publish("t.a", Ping(n=0), msg_id="before")
            await eventually(lambda: len(seen) == 1)
            with cluster.frozen(victim):
                await eventually(
                    lambda: node_of(cluster, bus) not in (None, victim),
                    timeout=60,
                    what="the consumer's bus to reconnect to a healthy node",
                )
                moved_while_frozen = victim.frozen
                await publish_until_stored(publisher, Ping(n=1), "during")
                await eventually(lambda: len(seen) == 2, timeout=60)
    assert moved_while_frozen
    assert seen == [(0, False), (1, True)], "delivered while the old node was still frozen"


async def stored_ids(bus: Bus) -> list[str]:
    """The Nats-Msg-Id of every message on T_EVENTS, in order."""
    info = await bus.js.stream_info("T_EVENTS")
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg("T_EVENTS", seq)
        ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
    return ids


async def test_a_leader_without_quorum_makes_publish_unavailable_then_stores_once(
    nats_cluster: NatsCluster,
) -> None:
    """The stream's leader alone: its first publish waits for a quorum that never comes, and
    JetStream answers each retry of that msg-id "duplicate message id is in process" (409).
    That is no refusal (the first may still be stored), so it must be `BusUnavailable` (ingest:
    503, retry), never an error; once a quorum is back the id is stored exactly once."""
    cluster = nats_cluster
    async with connected(cluster.urls, nats_stream_replicas=3) as bus:
        await bus.publish("t.a", Ping(n=0), msg_id="before")
        leader = await asyncio.to_thread(cluster.wait_stream_leader, "T_EVENTS")
        followers = [node for node in cluster.nodes if node is not leader]
        for node in followers:
            node.kill()
        await eventually(lambda: node_of(cluster, bus) is leader, timeout=60)
        refusals = []
        for _ in range(3):
            with pytest.raises(BusUnavailable) as caught:
                await bus.publish("t.a", Ping(n=1), msg_id="no-quorum")
            refusals.append(str(caught.value))
        for node in followers:
            node.start()
        await publish_until_stored(bus, Ping(n=1), "no-quorum")
        ids = await stored_ids(bus)
    assert any("in process" in refusal for refusal in refusals), refusals
    assert ids == ["before", "no-quorum"]


async def subscriptions_of(cluster: NatsCluster, client_name: str) -> int:
    """How many subscriptions the server holds for a named client's connection."""

    def count() -> int | None:
        for node in cluster.answering():
            for conn in cluster.connections(node):
                if conn.get("name") == client_name:
                    return int(conn["subscriptions"])
        return None

    for _ in range(100):
        found = await asyncio.to_thread(count)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no connection named {client_name}")


async def test_consumer_rides_out_leader_elections_without_piling_up_subscriptions(
    nats_cluster: NatsCluster,
) -> None:
    """Killing a consumer's leader makes its fetches fail (503) until another is elected; the
    consumer re-binds and goes on, and must not leave a subscription behind each time."""
    cluster = nats_cluster
    seen: list[int] = []

    async def handler(d: Delivery[Ping]) -> None:
        seen.append(d.event.n)

    async def delivered(count: int) -> None:
        await eventually(lambda: len(seen) == count, timeout=60, what=f"{count} delivered")

    async with (
        connected(cluster.urls, "consumer-side", nats_stream_replicas=3) as bus,
        consuming(bus, handler),
    ):
        await bus.publish("t.a", Ping(n=0), msg_id="e0")
        await eventually(lambda: seen == [0])
        before = await subscriptions_of(cluster, "consumer-side")
        for n in (1, 2, 3):
            leader = await asyncio.to_thread(cluster.consumer_leader, "T_EVENTS", "tester")
            assert leader is not None
            leader.kill()
            await publish_until_stored(bus, Ping(n=n), f"e{n}")
            await delivered(n + 1)
            leader.start()
            await asyncio.to_thread(cluster.wait_healthy)
        after = await subscriptions_of(cluster, "consumer-side")
    assert sorted(seen) == [0, 1, 2, 3]
    assert after == before
