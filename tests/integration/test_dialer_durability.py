"""The dialer under stress and crashes: shared CPS budget, kill -9 mid-call and mid-create."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from yobidashi_common.bus import Bus as ServiceBus
from yobidashi_common.bus import KvStore
from yobidashi_common.events import KeyPressed
from yobidashi_common.settings import NatsSettings
from yobidashi_common.subjects import KEYS_STREAM
from yobidashi_dialer.breaker import BREAKERS, Breaker, BreakerPolicy
from yobidashi_dialer.core.model import Incident, IncidentStatus
from yobidashi_dialer.core.tx import call_id_for
from yobidashi_dialer.limits import Budget
from yobidashi_dialer.store import CALLS, INCIDENTS, LIMITS, CallRecord, incident_key
from yobidashi_harness.nats_server import free_port
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.stack import (
    Bus,
    RunningDialer,
    Sim,
    alert_event,
    dialer_in_process,
    dialer_process,
    eventually,
    fallback_env,
    fallback_simulator,
    simulator,
    simulator_process,
)
from yobidashi_twilio_sim.testing import wait_call_done

pytestmark = pytest.mark.integration

YAMADA = "+819012345678"


@asynccontextmanager
async def replicas(
    nats_url: str, sim: Sim, count: int, env: dict[str, str]
) -> AsyncIterator[list[RunningDialer]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(dialer_in_process(nats_url, sim, env))
            for _ in range(count)
        ]


async def test_twenty_problems_at_once_across_replicas_are_each_placed_once(
    nats_url: str, tmp_path: Path
) -> None:
    """Two dialer processes share TWILIO_CPS=2 and twenty problems arrive at once: each is
    rung exactly once. (That the two replicas' creates never exceed the shared budget is
    checked on the budget's own clock in test_dialer_limits.py: the simulator's arrival
    times are skewed by a loaded machine, the budget's decisions are not.)"""
    numbers = [f"+8190{10000000 + n:08d}" for n in range(20)]
    async with simulator_process(tmp_path / "sim.log", cps=50) as sim, Bus(nats_url) as bus:
        dialers = [
            dialer_process(nats_url, sim, tmp_path / f"d{i}.log", TWILIO_CPS="2").start()
            for i in range(2)
        ]
        try:
            for d in dialers:
                d.wait_ready()
            for number in numbers:
                await sim.scenario(number, {"answer": "human", "answer_after": 1})
            await asyncio.gather(
                *(
                    bus.publish_alert(alert_event(1000 + n, sendto=number))
                    for n, number in enumerate(numbers)
                )
            )

            async def all_created() -> list[dict[str, Any]] | None:
                creates = [c for c in await sim.creates() if c["http_status"] == 201]
                return creates if len(creates) == 20 else None

            creates = await eventually(all_created, "20 creates", limit=60)
        finally:
            for d in dialers:
                d.stop()
    assert sorted(c["params"]["To"][0] for c in creates) == sorted(numbers)


async def test_live_call_cap_holds_across_replicas(nats_url: str) -> None:
    numbers = [f"+8180{20000000 + n:08d}" for n in range(4)]
    async with (
        simulator(cps=50) as sim,
        replicas(nats_url, sim, 2, {"TWILIO_MAX_CONCURRENT_CALLS": "1", "TWILIO_CPS": "20"}) as _ds,
        Bus(nats_url) as bus,
    ):
        for number in numbers:
            # each call lasts a while: answered, then the callee hangs up
            await sim.scenario(number, {"answer": "human", "answer_after": 2, "hangup_after": 10})
        for n, number in enumerate(numbers):
            await bus.publish_alert(alert_event(1100 + n, sendto=number))

        async def four_done() -> list[dict[str, Any]] | None:
            calls = await sim.calls()
            done = [c for c in calls if c["status"] == "completed"]
            return calls if len(done) == 4 else None

        calls = await eventually(four_done, "four calls, one after another", limit=90)
    spans = sorted((c["times"]["dialled"], c["times"]["ended"]) for c in calls)
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended - 0.05, "two calls were live at once"


async def stored_incident(bus: Bus, problem_key: str) -> Incident:
    entry = await (await bus.js.key_value(INCIDENTS.name)).get(incident_key(problem_key))
    return Incident.model_validate_json(entry.value)


async def acked(nats_url: str, problem_key: str) -> bool:
    async with Bus(nats_url) as bus:
        incident = await stored_incident(bus, problem_key)
        return incident.status is IncidentStatus.ACKNOWLEDGED


async def test_dialer_killed_between_placing_and_keypress_handles_the_key_once(
    nats_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {"TWILIO_RING_TIMEOUT": "200", "NATS_ACK_WAIT": "3"}
    async with simulator() as sim, Bus(nats_url) as bus:
        await sim.scenario(
            YAMADA,
            {"answer": "human", "answer_after": 100, "digits": [{"after": 0.5, "keys": "1"}]},
        )
        first = dialer_process(nats_url, sim, tmp_path / "d1.log", env, port=port).start()
        first.wait_ready()
        await bus.publish_alert(alert_event(2001))
        [call] = await sim.wait_calls(YAMADA, 1)
        await sim.wait_status(call["sid"], "ringing")
        first.kill()
        second = dialer_process(nats_url, sim, tmp_path / "d2.log", env, port=port).start()
        try:
            second.wait_ready()
            journal = await sim.wait_status(call["sid"], "completed")
            assert "確認を受け付けました" in " ".join(s["text"] or "" for s in journal["spoken"])
            await eventually(lambda: acked(nats_url, "zabbix:2001"), "the ack")
            keys = await bus.messages(KEYS_STREAM, "yobidashi.keys.", KeyPressed)
            assert len(keys) == 1
            assert len(await sim.calls(YAMADA)) == 1
        finally:
            second.stop()


async def test_dialer_killed_during_the_create_neither_loses_nor_repeats_the_call(
    nats_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {"TWILIO_RING_TIMEOUT": "200", "NATS_ACK_WAIT": "3", "DIAL_RECOVERY_AFTER": "2"}
    async with simulator() as sim, Bus(nats_url) as bus:
        await sim.scenario(
            YAMADA,
            {"answer": "human", "answer_after": 160, "digits": [{"after": 0.5, "keys": "1"}]},
        )
        await sim.faults(latency_ms=2500)  # the create is in flight when the dialer dies
        first: ServiceProcess = dialer_process(nats_url, sim, tmp_path / "d1.log", env, port=port)
        first.start().wait_ready()
        await bus.publish_alert(alert_event(2002))
        await eventually(lambda: sim.creates(), "the create request to arrive")
        first.kill()
        await sim.wait_calls(YAMADA, 1)  # Twilio still created it
        await sim.faults(latency_ms=0)
        second = dialer_process(nats_url, sim, tmp_path / "d2.log", env, port=port).start()
        try:
            second.wait_ready()
            await eventually(lambda: acked(nats_url, "zabbix:2002"), "the ack", limit=90)
            assert len(await sim.calls(YAMADA)) == 1, "the phone rang once"
            assert "dial.recovered" in second.log_file.read_text()
        finally:
            second.stop()


async def test_a_lost_final_status_is_found_by_the_watchdog_and_frees_the_call(
    nats_url: str, tmp_path: Path
) -> None:
    """The dialer is down when the call's last status callback comes: the watchdog asks
    Twilio, the page ends, and the call's live-call slot comes back (found by the chaos run:
    the check used to apply its result inside its own flush and recursed until it crashed)."""
    other = "+819012340002"
    env = {
        "DIAL_MAX_ATTEMPTS": "1",
        "TWILIO_RING_TIMEOUT": "5",
        "DIAL_WATCHDOG_GRACE": "1",
        "TWILIO_MAX_CONCURRENT_CALLS": "1",
        "NATS_ACK_WAIT": "2",
    }
    async with simulator() as sim, Bus(nats_url) as bus:
        await sim.scenario(YAMADA, {"answer": "no-answer"})
        proc = dialer_process(nats_url, sim, tmp_path / "dialer.log", env).start()
        try:
            proc.wait_ready()  # its streams exist
            await bus.publish_alert(alert_event(811, sendto=YAMADA))
            [call] = await sim.wait_calls(YAMADA, 1)
            await sim.wait_status(call["sid"], "ringing")
            proc.kill()
            # Over, and its last status callback sent (they go out after the status changes).
            journal = await wait_call_done(sim.http, call["sid"])
            assert journal["status"] == "no-answer"
            assert journal["webhooks"][-1]["error"], "the final callback met a dead dialer"
            proc.start()

            async def ended() -> Incident | None:
                incident = await stored_incident(bus, "zabbix:811")
                done = incident.pages[0].status.value == "unreached" and not incident.outbox
                return incident if done else None

            incident = await eventually(ended, "the watchdog to end the page")
            assert incident.pages[0].outcome == "no-answer"
            await bus.publish_alert(alert_event(812, sendto=other))
            await sim.wait_calls(other, 1, "a call in the slot the lost callback held")
        finally:
            proc.stop()
    assert "consumer.handler_failed" not in (tmp_path / "dialer.log").read_text()


async def test_dialer_killed_between_the_marker_and_the_create_rings_once_through_its_account(
    nats_url: str, tmp_path: Path
) -> None:
    """The primary's breaker is open, so the call goes to the fallback, whose only line is
    taken: the dialer waits for it with its marker written (naming the fallback) and no create
    sent, and is killed there. A new dialer finds the marker "placing", asks the fallback (no
    such call), retakes it and rings once, through the fallback; the primary is never asked to
    create anything."""
    service_bus = ServiceBus(
        NatsSettings(nats_url=nats_url), "test", buckets=[LIMITS, BREAKERS, CALLS]
    )
    await service_bus.start()
    await asyncio.wait_for(service_bus.wait_ready(), 30)
    port = free_port()
    call_id = call_id_for("zabbix:2003", "z1", 1)
    try:
        async with simulator() as primary, fallback_simulator() as fallback, Bus(nats_url) as bus:
            env = {
                **fallback_env(fallback, MAX_CONCURRENT_CALLS="1"),
                "TWILIO_BREAKER_COOLDOWN": "3600",
                "TWILIO_RING_TIMEOUT": "200",
                "NATS_ACK_WAIT": "3",
                "DIAL_RECOVERY_AFTER": "2",
            }
            breaker = Breaker(service_bus, "primary", BreakerPolicy(cooldown=3600))
            assert await breaker.failure("cannot_call", "test", fatal=True)
            line = Budget(service_bus, 10, 1, live_ttl=3600, account="fallback-1")

            async def yes() -> bool:
                return True

            async def nothing() -> None:
                return None

            assert await line.acquire("someone-else", still_wanted=yes, keep_alive=nothing)
            await fallback.scenario(
                YAMADA,
                {"answer": "human", "answer_after": 100, "digits": [{"after": 0.5, "keys": "1"}]},
            )
            first = dialer_process(nats_url, primary, tmp_path / "d1.log", env, port=port)
            first.start().wait_ready()
            await bus.publish_alert(alert_event(2003))
            markers = KvStore(service_bus, CALLS.name, CallRecord)

            async def marked() -> CallRecord | None:
                found = await markers.get(call_id)
                return found[0] if found else None

            marker = await eventually(marked, "the dial marker")
            assert marker.state == "placing"
            assert marker.accounts == ["fallback-1"]
            first.kill()
            assert await fallback.creates() == []
            await line.release("someone-else")
            second = dialer_process(nats_url, primary, tmp_path / "d2.log", env, port=port)
            second.start()
            try:
                second.wait_ready()
                await eventually(lambda: acked(nats_url, "zabbix:2003"), "the ack", limit=90)
                assert len(await fallback.calls(YAMADA)) == 1, "the phone rang once"
                assert await primary.creates() == []
                assert "dial.retaken" in second.log_file.read_text()
            finally:
                second.stop()
    finally:
        await service_bus.close()
