"""The chaos run's own tooling: the round-robin proxy in front of replicas, and the check that
no alert waited for a frozen node. Real sockets, no Zabbix: these are quick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from yobidashi_dialer.voice.phrases import PHRASES
from yobidashi_dialer.voice.twiml import Voices, after_key
from yobidashi_harness.nats_server import free_port
from yobidashi_testing.chaos.audit import says_already_recovered
from yobidashi_testing.chaos.cluster_faults import Freeze
from yobidashi_testing.chaos.freeze_latency import freeze_figures
from yobidashi_testing.chaos.plan import Problem
from yobidashi_testing.chaos.proxy import RoundRobinProxy


@asynccontextmanager
async def backend(name: str, port: int) -> AsyncIterator[None]:
    """An HTTP server that answers every request with its name, one request per connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = name.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_the_proxy_takes_turns_and_skips_a_replica_that_is_down() -> None:
    ports = [free_port(), free_port()]
    proxy = RoundRobinProxy(ports).start()
    try:
        async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as http:
            async with backend("a", ports[0]), backend("b", ports[1]):
                both = [(await http.get("/")).text for _ in range(4)]
            assert sorted(both) == ["a", "a", "b", "b"]
            async with backend("b", ports[1]):  # "a" is down: every request reaches "b"
                only_b = [(await http.get("/")).text for _ in range(4)]
            assert only_b == ["b"] * 4
            assert proxy.skipped >= 2
    finally:
        await asyncio.to_thread(proxy.close)


def problem(n: int, posted: float, accepted: float | None) -> Problem:
    p = Problem(n, f"+81905000{n:04d}", "press_1", 0, None, 0, eventid=str(n))
    p.first_post_at, p.accepted_at = posted, accepted
    return p


def call(number: str, created: float) -> dict[str, object]:
    return {"to": number, "times": {"created": created}}


def test_an_alert_that_waited_for_the_thaw_is_named() -> None:
    freeze = Freeze("n1", began=1000.0, ended=1300.0)
    on_time = problem(1, posted=1010, accepted=1015)
    held_at_ingest = problem(2, posted=1020, accepted=1301)
    held_at_dial = problem(3, posted=1030, accepted=1031)
    late_in_the_freeze = problem(4, posted=1290, accepted=1305)  # second half: not judged
    before = problem(5, posted=900, accepted=901)
    problems = [on_time, held_at_ingest, held_at_dial, late_in_the_freeze, before]
    calls = [call(p.number, (p.accepted_at or 0) + 1) for p in problems]
    calls[2] = call(held_at_dial.number, 1302)

    figures, waited = freeze_figures(problems, calls, [freeze])

    assert [w.split()[1] for w in waited] == ["2", "3"]
    assert figures["SIGSTOP #1 n1 300s: alert → ingest 2xx"].startswith("n=4 ")
    assert figures["whole run: alert → dial"].startswith("n=5 ")


def test_a_short_freeze_is_measured_not_judged() -> None:
    freeze = Freeze("n2", began=1000.0, ended=1010.0)
    held = problem(1, posted=1001, accepted=1011)
    figures, waited = freeze_figures([held], [call(held.number, 1012)], [freeze])
    assert waited == []
    assert figures["SIGSTOP #1 n2 10s: alert → dial"].startswith("n=1 ")


def test_a_node_frozen_twice_gets_two_lines() -> None:
    first, second = Freeze("n1", 1000.0, 1030.0), Freeze("n1", 2000.0, 2030.0)
    p = problem(1, posted=1001, accepted=1002)
    figures, _ = freeze_figures([p], [call(p.number, 1003)], [first, second])
    assert figures["SIGSTOP #1 n1 30s: alert → dial"].startswith("n=1 ")
    assert figures["SIGSTOP #2 n1 30s: alert → dial"] == "none"


def test_a_1_after_the_recovery_is_told_so_and_owes_no_ack() -> None:
    """The audit tells the dialer's 'already recovered' answer from an accepted 1."""
    for phrases in PHRASES.values():
        for bundle in (False, True):
            told = after_key(
                phrases.already_resolved(bundle=bundle), phrases=phrases, voices=Voices()
            )
            assert says_already_recovered(told)
        taken = after_key(phrases.acknowledged, phrases=phrases, voices=Voices())
        assert not says_already_recovered(taken)
