"""``yobidashi-acker`` as production runs it (a process, env config) against the real Zabbix 6.0.

Each test fires a real problem through the trapper, publishes a `KeyPressed` on a real
nats-server, and checks what Zabbix itself recorded (through the test-only `ZabbixRpc`, never
the acker's own client) and what the acker published. Waits poll with generous deadlines;
nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp import web

from yobidashi_acker.message import Intent, make_ref
from yobidashi_acker.zabbix import HttpZabbixApi, ZabbixConnection
from yobidashi_acker.zabbix.rules import parse_version
from yobidashi_common.events import (
    AckOutcome,
    AckResult,
    ContactRef,
    KeyAction,
    KeyPressed,
    ProblemRef,
)
from yobidashi_common.subjects import ACKS_STREAM, DLQ_STREAM
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.nats_server import NatsServer, free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_harness.zabbix_dev import DevInstance, start_frontend, stop_frontend
from yobidashi_testing.stack import Bus

pytestmark = [pytest.mark.zabbix, pytest.mark.integration]

PREFIX = "acker-it"
ACKER_USER = zs.ACKER_USERNAME  # "yobidashi-acker", the name ingest recognises
PERM_READ_WRITE = 3
WAIT = 90.0


@dataclass(frozen=True)
class Setup:
    rpc: ZabbixRpc  # Admin, to observe
    api_url: str
    server_port: int
    host: str
    key: str
    closable: str  # trigger with manual close allowed
    not_closable: str  # trigger without
    token: str  # the acker user's API token


@pytest.fixture(scope="module")
def setup(zabbix_dev: DevInstance) -> Iterator[Setup]:
    rpc = ZabbixRpc(zabbix_dev.api_url)
    rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
    where = zs.ensure_trapper_host(rpc, PREFIX, "yobidashi.acker.value")
    groupid, host, key = where.groupid, where.host, where.key
    closable = zs.ensure_trigger(
        rpc, where.hostid, f"{PREFIX} closable", where.above(5), manual_close=True
    )
    not_closable = zs.ensure_trigger(
        rpc, where.hostid, f"{PREFIX} not closable", where.above(7), manual_close=False
    )
    # Closing needs read-write on the host group (6.0: "editable"); reading is enough to ack.
    group = zs.ensure_user_group(rpc, "Yobidashi ackers", [groupid], permission=PERM_READ_WRITE)
    userid = zs.ensure_user(
        rpc, zs.UserSpec(username=ACKER_USER, usrgrpids=[group], name="Yobidashi", surname="Acker")
    )
    token = zs.ensure_api_token(rpc, userid, PREFIX)
    zs.wait_for_config_sync(host, key, server_port=zabbix_dev.server_port, changed_at=time.time())
    yield Setup(
        rpc, zabbix_dev.api_url, zabbix_dev.server_port, host, key, closable, not_closable,
        token.token,
    )  # fmt: skip
    zs.send(host, key, 0, server_port=zabbix_dev.server_port)  # leave no problem open


def fire(setup: Setup) -> tuple[str, str]:
    """A fresh problem on both triggers; returns (closable event, not-closable event)."""
    baselines = [zs.last_event_id(setup.rpc, t) for t in (setup.closable, setup.not_closable)]
    zs.send(setup.host, setup.key, 0, server_port=setup.server_port)
    zs.send(setup.host, setup.key, 10, server_port=setup.server_port)
    events = [
        zs.wait_for_problem(setup.rpc, t, after_eventid=b)["eventid"]
        for t, b in zip((setup.closable, setup.not_closable), baselines, strict=True)
    ]
    return events[0], events[1]


_n = itertools.count(1)


def keypress(
    *event_ids: str, action: KeyAction = KeyAction.ACKNOWLEDGE, name: str = "山田太郎"
) -> KeyPressed:
    n = next(_n)
    stamp = secrets.token_hex(4)
    return KeyPressed(
        id=f"{PREFIX}-kp-{stamp}-{n}",
        call_id=f"call-{stamp}",
        call_sid=f"CA{stamp}{n:024d}",
        problems=[ProblemRef(problem_key=f"zabbix:{e}", source_event_id=e) for e in event_ids],
        contact=ContactRef(id="yamada", name=name, masked_number="+81 90-****-5678"),
        digit="1",
        action=action,
        at=datetime.now(UTC),
    )


async def publish(url: str, kp: KeyPressed, msg_id: str | None = None) -> None:
    async with Bus(url) as bus:
        await bus.publish_keypress(kp, msg_id or f"{kp.id}.{next(_n)}")


async def stream(url: str, name: str) -> list[tuple[bytes, dict[str, str]]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            return []
        found = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(name, seq)
                found.append((msg.data or b"", dict(msg.headers or {})))
        return found
    finally:
        await nc.close()


async def result_of(url: str, kp: KeyPressed, count: int = 1) -> list[AckResult]:
    deadline = time.monotonic() + WAIT
    while True:
        results = [AckResult.model_validate_json(d) for d, _ in await stream(url, ACKS_STREAM)]
        mine = [r for r in results if r.keypress_id == kp.id]
        if len(mine) >= count:
            return mine
        if time.monotonic() > deadline:
            raise TimeoutError(f"no AckResult for {kp.id} within {WAIT} s; all: {results}")
        await asyncio.sleep(0.1)


def metric(acker: ServiceProcess, name: str) -> float:
    with urllib.request.urlopen(f"{acker.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def wait_metric(acker: ServiceProcess, name: str, above: float) -> float:
    deadline = time.monotonic() + WAIT
    while (value := metric(acker, name)) <= above:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} stayed at {value}; log:\n{acker.tail()}")
        await asyncio.sleep(0.1)
    return value


def ours(setup: Setup, eventid: str) -> list[dict[str, Any]]:
    return [a for a in zs.acknowledges(setup.rpc, eventid) if "via Yobidashi" in a["message"]]


def acker_env(setup: Setup, nats_url: str, **extra: str) -> dict[str, str]:
    return {
        "NATS_URL": nats_url,
        "ZABBIX_URL": setup.api_url.removesuffix("/api_jsonrpc.php"),
        "ZABBIX_API_TOKEN": setup.token,
        "ZABBIX_TIMEOUT": "5s",
        "ZABBIX_PROBE_INTERVAL": "2s",
        "ACKER_RETRY_BACKOFF": "0.2s,0.5s,1s",
        "NATS_PUBLISH_TIMEOUT": "2",
        "LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.fixture
def acker(setup: Setup, nats_server: NatsServer, tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("yobidashi-acker", acker_env(setup, nats_server.url), tmp_path / "a.log")
    proc.start()
    proc.wait_ready()
    yield proc
    proc.stop()


# -- the tests -----------------------------------------------------------------------------------


# It checks the version the acker logs and its body auth, which are 6.0's.
@pytest.mark.parametrize("zabbix_dev", ["6.0"], indirect=True)
async def test_a_keypress_acknowledges_the_real_problem(
    setup: Setup, acker: ServiceProcess, nats_server: NatsServer
) -> None:
    eventid, _ = fire(setup)
    kp = keypress(eventid)
    await publish(nats_server.url, kp)
    [result] = await result_of(nats_server.url, kp)

    event = zs.get_event(setup.rpc, eventid)
    assert event["acknowledged"] == "1"
    [entry] = event["acknowledges"]
    ref = make_ref(kp.id, f"zabbix:{eventid}", Intent.ACKNOWLEDGE)
    assert entry["username"] == ACKER_USER
    assert entry["action"] == "6"
    assert re.fullmatch(
        r"Acknowledged by phone by 山田太郎 \(\+81 90-\*\*\*\*-5678\) at \d{4}-\d\d-\d\d \d\d:\d\d "
        rf"JST via Yobidashi \[call {kp.call_sid}/ref {ref}\]",
        entry["message"],
    ), entry["message"]
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert (result.action, result.message, result.zabbix_user) == (6, entry["message"], ACKER_USER)
    assert result.pressed_at == kp.at

    assert acker.stop() == 0
    log = acker.log_file.read_text()
    assert setup.token not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    written = [line for line in lines if line["event"] == "acker.written"]
    assert written
    assert written[0]["event_id"] == eventid
    assert written[0]["call_sid"] == kp.call_sid
    versions = [line for line in lines if line["event"] == "zabbix.version"]
    assert versions[0]["version"] == "6.0.14"
    assert versions[0]["auth_placement_mode"] == "body"


async def test_redeliveries_and_a_second_engineer_leave_exactly_one_entry(
    setup: Setup, acker: ServiceProcess, nats_server: NatsServer
) -> None:
    eventid, _ = fire(setup)
    kp = keypress(eventid)
    # Different msg ids: JetStream's dedup cannot help; the acker must.
    await asyncio.gather(*(publish(nats_server.url, kp, f"{kp.id}.copy{i}") for i in range(3)))
    [first] = await result_of(nats_server.url, kp)
    await publish(nats_server.url, kp, f"{kp.id}.late")
    other = keypress(eventid, name="鈴木花子")
    await publish(nats_server.url, other)
    [second] = await result_of(nats_server.url, other)
    # Give the late redelivery every chance to (wrongly) write, then look.
    await wait_metric(
        acker, 'yobidashi_bus_messages_handled_total{consumer="acker",result="ok"}', 4
    )

    assert first.outcome is AckOutcome.ACKNOWLEDGED
    assert second.outcome is AckOutcome.ALREADY_ACKNOWLEDGED
    assert second.detail == "already acknowledged by phone through Yobidashi"
    entries = zs.acknowledges(setup.rpc, eventid)
    assert len(entries) == 1, entries
    assert entries[0]["action"] == "6"


async def test_while_the_frontend_is_down_the_ack_waits_and_lands_once(
    setup: Setup, acker: ServiceProcess, nats_server: NatsServer, zabbix_dev: DevInstance
) -> None:
    eventid, _ = fire(setup)
    kp = keypress(eventid)
    retries = metric(acker, "yobidashi_acker_retries_total")
    stop_frontend(zabbix_dev.config)
    try:
        await publish(nats_server.url, kp)
        # A few failed attempts, seen in the metrics rather than guessed with a sleep.
        await wait_metric(acker, "yobidashi_acker_retries_total", retries + 3)
        status = json.loads(urllib.request.urlopen(f"{acker.url}/status", timeout=5).read())
        ready = urllib.request.urlopen(f"{acker.url}/readyz", timeout=5).status
    finally:
        start_frontend(zabbix_dev.config)
    [result] = await result_of(nats_server.url, kp)

    assert status["zabbix"]["reachable"] is False
    assert status["zabbix"]["last_error_kind"] == "transport"
    assert ready == 200, "a Zabbix outage does not make the acker unready"
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert len(zs.acknowledges(setup.rpc, eventid)) == 1
    assert await stream(nats_server.url, DLQ_STREAM) == []


async def test_kill_9_mid_retry_then_restart_lands_the_ack_once(
    setup: Setup, nats_server: NatsServer, zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    eventid, _ = fire(setup)
    kp = keypress(eventid)
    # Killed mid-attempt, its claim is only taken over once stale: keep that short here.
    env = acker_env(
        setup, nats_server.url, NATS_ACK_WAIT="3s", ZABBIX_TIMEOUT="2s", ACKER_CLAIM_STALE="10s"
    )
    first = ServiceProcess("yobidashi-acker", env, tmp_path / "first.log")
    first.start()
    first.wait_ready()
    stop_frontend(zabbix_dev.config)
    try:
        await publish(nats_server.url, kp)
        await wait_metric(first, "yobidashi_acker_retries_total", 1)
        first.kill()
    finally:
        start_frontend(zabbix_dev.config)
    second = ServiceProcess("yobidashi-acker", env, tmp_path / "second.log", port=first.port)
    second.start()
    try:
        [result] = await result_of(nats_server.url, kp)
    finally:
        second.stop()
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert len(zs.acknowledges(setup.rpc, eventid)) == 1


async def test_a_write_that_landed_before_a_crash_is_recognised(
    setup: Setup, acker: ServiceProcess, nats_server: NatsServer
) -> None:
    """The crash window: Zabbix took the write, the acker died before recording it."""
    eventid, _ = fire(setup)
    kp = keypress(eventid)
    ref = make_ref(kp.id, f"zabbix:{eventid}", Intent.ACKNOWLEDGE)
    as_acker = ZabbixRpc(setup.api_url, auth=setup.token)
    zs.acknowledge(as_acker, eventid, f"Acknowledged by phone via Yobidashi [call x/ref {ref}]")
    await publish(nats_server.url, kp)
    [result] = await result_of(nats_server.url, kp)
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert result.detail == "found in Zabbix after a retry"
    assert len(zs.acknowledges(setup.rpc, eventid)) == 1


async def test_an_unknown_event_is_dead_lettered_with_a_failed_result(
    setup: Setup, acker: ServiceProcess, nats_server: NatsServer
) -> None:
    kp = keypress("999999999")
    await publish(nats_server.url, kp)
    [result] = await result_of(nats_server.url, kp)
    deadline = time.monotonic() + WAIT
    while not (dead := await stream(nats_server.url, DLQ_STREAM)):
        assert time.monotonic() < deadline, "nothing dead-lettered"
        await asyncio.sleep(0.1)
    assert result.outcome is AckOutcome.FAILED
    assert result.detail is not None
    assert "999999999 does not exist" in result.detail
    [(data, headers)] = dead
    assert KeyPressed.model_validate_json(data).id == kp.id
    assert "does not exist" in headers["Yobidashi-Dlq-Reason"]


async def test_close_closes_where_the_trigger_allows_it_and_acknowledges_elsewhere(
    setup: Setup, acker: ServiceProcess, nats_server: NatsServer
) -> None:
    closable, not_closable = fire(setup)
    kp = keypress(closable, not_closable, action=KeyAction.CLOSE)
    await publish(nats_server.url, kp)
    results = {r.problem.source_event_id: r for r in await result_of(nats_server.url, kp, 2)}

    assert results[closable].action == 7
    assert results[not_closable].action == 6
    assert results[not_closable].detail == (
        "acknowledged, not closed: the trigger does not allow manual close"
    )
    [closed] = ours(setup, closable)
    [acked] = ours(setup, not_closable)
    assert (closed["action"], acked["action"]) == ("7", "6")
    assert acked["message"].endswith("the trigger does not allow manual close.")
    # The server closes asynchronously (task manager, every 5 s).
    zs.wait_for_resolved(setup.rpc, closable, timeout=WAIT)
    assert zs.get_event(setup.rpc, not_closable)["r_eventid"] == "0"


@pytest.mark.parametrize("zabbix_dev", ["6.0"], indirect=True)
async def test_password_login_against_the_real_6_0(setup: Setup, zabbix_dev: DevInstance) -> None:
    """user.login with ``username`` (never ``user``), session in the body, on the real 6.0."""
    group = zs.ensure_user_group(setup.rpc, "Yobidashi ackers", [])
    password = "Pw-" + secrets.token_urlsafe(12)
    username = f"{PREFIX}-pw"
    zs.ensure_user(setup.rpc, zs.UserSpec(username=username, usrgrpids=[group], password=password))
    eventid, _ = fire(setup)
    api = HttpZabbixApi(
        ZabbixConnection(url=setup.api_url, username=username, password=password, timeout=10)
    )
    try:
        await api.check()
        await api.acknowledge(eventid, 6, "Test via Yobidashi [call CA1/ref pwtest000000]")
        event = await api.get_event(eventid)
    finally:
        await api.close()
    assert event is not None
    assert event.acknowledged
    entry = event.find("pwtest000000")
    assert entry is not None
    assert entry.username == username
    assert api.status.auth_placement == "body"


# -- what goes over the wire ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]  # lower-case names


@asynccontextmanager
async def recording_proxy(upstream: str) -> AsyncIterator[tuple[str, list[Recorded]]]:
    """A reverse proxy in front of the frontend that records every JSON-RPC request."""
    seen: list[Recorded] = []
    hop = {"host", "content-length", "transfer-encoding", "connection"}
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            payload = json.loads(body)
            headers = {k.lower(): v for k, v in request.headers.items()}
            seen.append(Recorded(str(payload.get("method")), payload, headers))
            async with session.post(
                upstream + request.path_qs,
                data=body,
                headers={k: v for k, v in request.headers.items() if k.lower() not in hop},
            ) as answer:
                content = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in hop}
                return web.Response(status=answer.status, body=content, headers=kept)

        app = web.Application()
        app.router.add_post("/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}", seen
        finally:
            await runner.cleanup()


async def test_no_request_to_the_real_zabbix_carries_a_credential_twice_or_where_refused(
    setup: Setup, zabbix_dev: DevInstance
) -> None:
    """Token and password, through a recording proxy: the credential goes in exactly one place,
    the one this version wants; apiinfo.version and user.login carry no Authorization header;
    logins say ``username``. The expectations follow the version Zabbix reports, so the same
    test holds on any release the fixture brings up."""
    group = zs.ensure_user_group(setup.rpc, "Yobidashi ackers", [])
    password = "Pw-" + secrets.token_urlsafe(12)
    username = f"{PREFIX}-wire"
    zs.ensure_user(setup.rpc, zs.UserSpec(username=username, usrgrpids=[group], password=password))
    eventid, _ = fire(setup)
    frontend = setup.api_url.removesuffix("/api_jsonrpc.php")
    async with recording_proxy(frontend) as (url, seen):
        for name, token, secret in ((ACKER_USER, setup.token, None), (username, None, password)):
            api = HttpZabbixApi(
                ZabbixConnection(url, name, api_token=token, password=secret, timeout=10)
            )
            try:
                await api.check()
                event = await api.get_event(eventid)
                await api.acknowledge(eventid, 4, f"Wire check via Yobidashi [{name}]")
                version = await api.version()
            finally:
                await api.close()
            assert event is not None
    methods = [r.method for r in seen]
    assert {"apiinfo.version", "user.login", "event.get", "event.acknowledge", "user.logout"} <= (
        set(methods)
    ), methods
    bearer_from = version >= parse_version("6.4")
    for request in seen:
        authorization = request.headers.get("authorization")
        body_auth = "auth" in request.body
        assert not (body_auth and authorization is not None), request
        if request.method in ("apiinfo.version", "user.login"):
            assert authorization is None, request
            assert not body_auth, request
        elif bearer_from:
            assert authorization is not None, request
            assert authorization.startswith("Bearer "), request
        else:
            assert body_auth, request
            assert authorization is None, request
        if request.method == "user.login":
            assert set(request.body["params"]) == {"username", "password"}, request
    entries = [a for a in zs.acknowledges(setup.rpc, eventid) if "Wire check" in a["message"]]
    assert len(entries) == 2
