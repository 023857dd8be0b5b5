"""Two telephony accounts, as two independent simulators with different credentials, behind a
real nats-server: the primary fails in the middle of a storm (503s, or refusing every create as
a suspended account does, or gone altogether) and nothing is lost, nothing is rung twice, every
account keeps its own CPS, acknowledgements still land, and new calls return to the primary
once it is back. A callback signed with the other account's token is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import httpx
import pytest
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator

from yobidashi_common.bus import Bus as ServiceBus
from yobidashi_common.events import KeyPressed
from yobidashi_common.settings import NatsSettings
from yobidashi_common.subjects import KEYS_STREAM
from yobidashi_dialer.accounts import AccountConfig
from yobidashi_dialer.breaker import BREAKERS, BreakerPolicy, BreakerState
from yobidashi_dialer.core.model import IncidentStatus
from yobidashi_dialer.core.tx import call_id_for
from yobidashi_dialer.failover import AccountPool
from yobidashi_dialer.store import LIMITS
from yobidashi_dialer.telephony import Telephony
from yobidashi_testing.stack import (
    FALLBACK_FROM_NUMBER,
    FROM_NUMBER,
    Bus,
    RunningDialer,
    Sim,
    alert_event,
    dialer_in_process,
    eventually,
    fallback_env,
    fallback_simulator,
    simulator,
)

pytestmark = pytest.mark.integration

PRESS_1: dict[str, Any] = {"answer": "human", "answer_after": 1, "digits": [{"keys": "1"}]}
FAST_BREAKER = {
    "TWILIO_BREAKER_FAILURES": "2",
    "TWILIO_BREAKER_WINDOW": "60",
    "TWILIO_BREAKER_COOLDOWN": "1",
}


@asynccontextmanager
async def primary_and_fallback(
    nats_url: str,
    env: Mapping[str, str] | None = None,
    *,
    fallback_configured: bool = True,
    **overrides: str,
) -> AsyncIterator[tuple[Sim, Sim, RunningDialer, Bus]]:
    """Two simulated Twilio accounts, the dialer on the first with the second as its fallback,
    and a bus client. With ``fallback_configured`` false the dialer knows only the first; the
    second simulator still runs, so a test can show that nothing reached it."""
    async with (
        simulator() as primary,
        fallback_simulator() as fallback,
        dialer_in_process(
            nats_url,
            primary,
            {
                **(env or {}),
                **(fallback_env(fallback) if fallback_configured else {}),
                **overrides,
            },
        ) as d,
        Bus(nats_url) as bus,
    ):
        yield primary, fallback, d, bus


def number(n: int) -> str:
    return f"+8190{55500000 + n:08d}"


def most_in_any_second(times: list[float]) -> int:
    return max((sum(1 for t in times if s <= t < s + 1.0) for s in times), default=0)


async def placed(sim: Sim) -> list[dict[str, Any]]:
    """Creates the account accepted (each one a real call, ringing a phone)."""
    return [c for c in await sim.creates() if c["http_status"] == 201]


async def rung(*sims: Sim) -> Counter[str]:
    counts: Counter[str] = Counter()
    for sim in sims:
        for create in await placed(sim):
            counts[create["params"]["To"][0]] += 1
    return counts


async def breaker(d: RunningDialer, account: str) -> BreakerState | None:
    found = await d.dialer.pool.by_name[account].breaker._store.get(account)
    return found[0] if found else None


async def storm(
    nats_url: str,
    primary: Sim,
    fallback: Sim,
    d: RunningDialer,
    fail: Any,
    problems: int,
) -> None:
    numbers = [number(n) for n in range(problems)]
    for n in numbers:
        await primary.scenario(n, PRESS_1)
        await fallback.scenario(n, PRESS_1)
    async with Bus(nats_url) as bus:
        for i, n in enumerate(numbers):
            await bus.publish_alert(alert_event(7000 + i, sendto=n, host=f"web{i:02d}"))
            if i == 2:
                # Fail the primary with the storm under way: some calls are queued behind its
                # CPS, some are being created.
                await eventually(lambda: placed(primary), "a first call through the primary")
                await fail()

        async def all_rung() -> Counter[str] | None:
            counts = await rung(primary, fallback)
            return counts if set(counts) == set(numbers) else None

        counts = await eventually(all_rung, f"all {problems} problems to be rung")
        # Nothing more is coming: every call is placed and its marker says so.
        for i in range(problems):

            async def acknowledged(key: str = f"zabbix:{7000 + i}") -> bool:
                incident = await d.dialer.engine.load(key)
                return incident is not None and incident.status is IncidentStatus.ACKNOWLEDGED

            await eventually(acknowledged, f"problem {i} acknowledged")
        keys = await bus.messages(KEYS_STREAM, "yobidashi.keys.v1.", KeyPressed)
    counts = await rung(primary, fallback)
    assert set(counts) == set(numbers), "a problem was never rung"
    assert max(counts.values()) == 1, f"rung twice: {[n for n, c in counts.items() if c > 1]}"
    acked = {p.problem_key for k in keys if k.action.value == "acknowledge" for p in k.problems}
    assert acked == {f"zabbix:{7000 + i}" for i in range(problems)}
    fallback_creates = await placed(fallback)
    assert fallback_creates, "the fallback placed nothing: the failover was not exercised"
    assert {c["params"]["From"][0] for c in fallback_creates} == {FALLBACK_FROM_NUMBER}
    assert {c["params"]["From"][0] for c in await placed(primary)} <= {FROM_NUMBER}
    # The fallback's own CPS (2), not the primary's (10), however the storm arrived.
    arrivals = sorted(c["arrived_at"] for c in await fallback.creates())
    assert most_in_any_second(arrivals) <= 2


@pytest.mark.parametrize("fault", ["unavailable", "suspended"])
async def test_primary_fails_mid_storm_nothing_lost_nothing_twice_and_new_calls_return(
    nats_url: str, fault: str
) -> None:
    async with (
        simulator(cps=10) as primary,
        fallback_simulator(cps=10) as fallback,
        dialer_in_process(
            nats_url,
            primary,
            {**FAST_BREAKER, **fallback_env(fallback, CPS="2")},
            TWILIO_CPS="1",
            allow_handler_errors=True,
        ) as d,
    ):

        async def fail() -> None:
            if fault == "unavailable":
                await primary.faults(unavailable=True)
            else:
                await primary.faults(refuse_creates=20005)

        await storm(nats_url, primary, fallback, d, fail, problems=8)
        state = await breaker(d, "primary")
        assert state is not None
        assert state.state in ("open", "half_open")

        # The primary is back: after its cooldown a probe closes the breaker, and new calls go
        # to it again.
        await primary.faults()
        before = len(await placed(fallback))
        async with Bus(nats_url) as bus:
            for i in range(4):
                back = number(50 + i)
                await primary.scenario(back, PRESS_1)
                await bus.publish_alert(alert_event(7100 + i, sendto=back))
                await eventually(partial(_rung_once, primary, fallback, back), f"{back} rung")
        later = [c for c in await placed(primary) if c["params"]["To"][0] == number(53)]
        assert later, "the last new call did not return to the primary"
        assert len(await placed(fallback)) - before <= 3
        state = await breaker(d, "primary")
        assert state is not None
        assert state.state == "closed"


async def _rung_once(primary: Sim, fallback: Sim, to: str) -> bool:
    return (await rung(primary, fallback))[to] == 1


async def test_primary_process_gone_mid_storm_the_fallback_rings_everyone(nats_url: str) -> None:
    async with fallback_simulator(cps=10) as fallback:
        primary_cm = simulator(cps=10)
        primary = await primary_cm.__aenter__()
        stopped = False
        try:
            async with dialer_in_process(
                nats_url,
                primary,
                {**FAST_BREAKER, **fallback_env(fallback, CPS="2")},
                TWILIO_CPS="1",
                TWILIO_REQUEST_TIMEOUT="2",
                allow_handler_errors=True,
            ) as d:
                numbers = [number(n) for n in range(6)]
                for n in numbers:
                    await primary.scenario(n, PRESS_1)
                    await fallback.scenario(n, PRESS_1)
                async with Bus(nats_url) as bus:
                    for i, n in enumerate(numbers):
                        await bus.publish_alert(alert_event(7200 + i, sendto=n))
                        if i == 1:
                            await eventually(lambda: placed(primary), "a first call")
                            before = await rung(primary)
                            await primary_cm.__aexit__(None, None, None)
                            stopped = True

                    async def all_rung() -> bool:
                        return set(before) | set(await rung(fallback)) == set(numbers)

                    await eventually(all_rung, "every problem rung")
                    counts = before + await rung(fallback)
                    assert max(counts.values()) == 1
                state = await breaker(d, "primary")
                assert state is not None
                assert state.state != "closed"
        finally:
            if not stopped:
                await primary_cm.__aexit__(None, None, None)


async def test_calls_accepted_but_never_placed_open_the_breaker_and_the_fallback_rings(
    nats_url: str,
) -> None:
    """The primary answers every create 201, yet no call leaves its queue (its carrier side is
    down). Nothing fails loudly: the watchdog's look at each call finds it still queued, which
    is evidence against the account; once the breaker opens, a new problem rings through the
    fallback and not into the same hole."""
    silent_before = silent_failures("primary")
    async with primary_and_fallback(
        nats_url,
        # A long cooldown: no half-open probe (whose create would be accepted) closes the
        # breaker before the last problem is placed.
        {**FAST_BREAKER, "TWILIO_BREAKER_COOLDOWN": "600"},
        TWILIO_RING_TIMEOUT="5",
        DIAL_WATCHDOG_GRACE="1",
    ) as (primary, fallback, d, bus):
        await primary.settings(dialling_held=True)
        held = [number(60), number(61)]
        for i, to in enumerate(held):
            await bus.publish_alert(alert_event(7400 + i, sendto=to))

        async def both_accepted() -> bool:
            return set(await rung(primary)) == set(held)

        await eventually(both_accepted, "both creates accepted by the primary")
        assert all(c["status"] == "queued" for c in await primary.calls())

        async def opened() -> BreakerState | None:
            state = await breaker(d, "primary")
            return state if state is not None and state.state == "open" else None

        state = await eventually(opened, "the primary's breaker opened on silent calls")
        assert state.reason.startswith("silent: call still queued")
        # At least FAST_BREAKER's threshold (2) of silent evidence: a call still held is looked
        # at again at each watchdog round, and the next round may already have come.
        assert silent_failures("primary") - silent_before >= 2

        after = number(62)
        await fallback.scenario(after, PRESS_1)
        await bus.publish_alert(alert_event(7402, sendto=after))
        await fallback.wait_calls(after, 1)
        assert (await rung(primary))[after] == 0


def silent_failures(account: str) -> float:
    labels = {"account": account, "kind": "silent"}
    return REGISTRY.get_sample_value("yobidashi_dialer_account_errors_total", labels) or 0.0


async def test_a_callback_signed_with_the_other_accounts_token_is_refused(nats_url: str) -> None:
    async with (
        primary_and_fallback(nats_url) as (primary, fallback, d, bus),
        httpx.AsyncClient(base_url=d.url) as http,
    ):
        to = number(90)
        await primary.scenario(to, {"answer": "no-answer"})
        await bus.publish_alert(alert_event(7300, sendto=to))
        [call] = await primary.wait_calls(to, 1)
        status_url = call["params"]["StatusCallback"][0]
        assert "acct=" not in status_url  # the primary's URLs are as they always were
        path = status_url.removeprefix(d.settings.public_base_url)
        form = {"CallSid": call["sid"], "CallStatus": "busy", "AccountSid": fallback.account_sid}

        async def post(url: str, token: str) -> int:
            signature = RequestValidator(token).compute_signature(url, form)
            response = await http.post(
                url.removeprefix(d.settings.public_base_url),
                data=form,
                headers={"X-Twilio-Signature": signature},
            )
            return response.status_code

        # The primary's call, its URL, the fallback's token.
        assert await post(status_url, fallback.auth_token) == 403
        # The same, claiming to be the fallback's callback: validly signed, wrong account.
        assert await post(status_url + "&acct=fallback-1", fallback.auth_token) == 403
        # An account that does not exist.
        assert await post(status_url + "&acct=nobody", fallback.auth_token) == 403
        incident = await d.dialer.engine.load("zabbix:7300")
        assert incident is not None
        assert incident.status is not IncidentStatus.ACKNOWLEDGED
        # The right token for the right account is taken.
        assert await post(status_url, primary.auth_token) == 204
        assert path.startswith("/twilio/voice/status")


async def test_breaker_state_is_shared_and_survives_a_restart(nats_url: str) -> None:
    async with simulator() as primary, fallback_simulator() as fallback:
        env = {**FAST_BREAKER, "TWILIO_BREAKER_COOLDOWN": "3600", **fallback_env(fallback)}
        async with dialer_in_process(nats_url, primary, env) as d:
            opened = await d.dialer.pool.primary.breaker.failure("cannot_call", "x", fatal=True)
            assert opened
        # A new dialer process (another replica, or this one restarted) knows it is open and
        # sends its first call to the fallback.
        async with dialer_in_process(nats_url, primary, env), Bus(nats_url) as bus:
            to = number(91)
            await fallback.scenario(to, {"answer": "no-answer"})
            await bus.publish_alert(alert_event(7400, sendto=to))
            await fallback.wait_calls(to, 1)
            assert await placed(primary) == []
    assert BREAKERS.name == "yobidashi_breakers"


def jetstream_requests(operation: str) -> float:
    labels = {"operation": operation}
    return REGISTRY.get_sample_value("yobidashi_bus_jetstream_requests_total", labels) or 0.0


async def test_the_dial_marker_names_its_account_in_the_write_that_creates_it(
    nats_url: str,
) -> None:
    """The account is chosen before the dial marker is created, so the marker names it from
    its very first write: when the create is sent, the marker already says where it went (crash
    recovery asks exactly that account), and no second write was needed to say so."""
    async with simulator() as primary, fallback_simulator() as fallback:
        env = {**FAST_BREAKER, "TWILIO_BREAKER_COOLDOWN": "3600", **fallback_env(fallback)}
        async with dialer_in_process(nats_url, primary, env) as d, Bus(nats_url) as bus:
            assert await d.dialer.pool.primary.breaker.failure("cannot_call", "x", fatal=True)
            to = number(93)
            await fallback.scenario(to, {"answer": "no-answer"})
            await fallback.faults(latency_ms=3000)  # the dialer waits inside the create
            puts_before = jetstream_requests("kv_put")
            await bus.publish_alert(alert_event(7500, sendto=to))
            await eventually(lambda: fallback.creates(), "the create to reach the fallback")
            found = await d.dialer.calls.get(call_id_for("zabbix:7500", "z1", 1))
            assert found is not None
            marker = found[0]
            assert marker.state == "placing"
            assert marker.accounts == ["fallback-1"]
            assert marker.from_number == FALLBACK_FROM_NUMBER
            # Nothing rewrote the marker between its create and the Twilio create.
            assert jetstream_requests("kv_put") == puts_before
            await fallback.faults()
            await fallback.wait_calls(to, 1)
        assert await placed(primary) == []


def account_config(name: str, sid_digit: str) -> AccountConfig:
    return AccountConfig(
        name=name,
        account_sid="AC" + sid_digit * 32,
        auth_token="token-" + name,
        from_numbers=(FROM_NUMBER,),
        edge=None,
        region=None,
        cps=10,
        max_concurrent_calls=0,
        api_base_url=None,
    )


async def test_replicas_follow_the_breakers_through_a_watch_and_choose_without_a_read(
    nats_url: str,
) -> None:
    """Choosing an account costs no request while the breaker watch runs: one replica opens
    the primary's breaker, the other learns it from its watch and sends its next call to the
    fallback, still without reading the record. Once its watch has stopped, every choice reads
    the records again, as it did before there was a watch."""
    configs = [account_config("primary", "1"), account_config("fallback-1", "2")]
    buses = [
        ServiceBus(NatsSettings(nats_url=nats_url), f"replica-{n}", buckets=[BREAKERS, LIMITS])
        for n in (1, 2)
    ]
    for bus in buses:
        await bus.start()
        await asyncio.wait_for(bus.wait_ready(), 30)
    pools = [
        AccountPool(
            bus,
            configs,
            lambda _config: cast(Telephony, None),  # no call is placed here
            live_ttl=60,
            policy=BreakerPolicy(cooldown=3600),
        )
        for bus in buses
    ]
    opener, follower = pools
    watch = asyncio.create_task(follower.watch(every=3600))
    try:

        async def following() -> bool:
            return all(a.breaker.view is not None for a in follower.accounts)

        await eventually(following, "the watch's first read")
        gets = jetstream_requests("kv_get")
        assert await follower.choose() == (follower.primary, False)
        assert jetstream_requests("kv_get") == gets

        assert await opener.primary.breaker.failure("cannot_call", "test", fatal=True)

        async def seen_open() -> bool:
            view = follower.primary.breaker.view
            return view is not None and view.state == "open"

        await eventually(seen_open, "the watch to report the open breaker")
        gets = jetstream_requests("kv_get")  # (the opener read the record to change it)
        assert await follower.choose() == (follower.by_name["fallback-1"], False)
        assert jetstream_requests("kv_get") == gets, "a choice read a breaker record"
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    try:
        assert all(a.breaker.view is None for a in follower.accounts)
        gets = jetstream_requests("kv_get")
        assert await follower.choose() == (follower.by_name["fallback-1"], False)
        assert jetstream_requests("kv_get") > gets
    finally:
        for bus in buses:
            await bus.close()


@pytest.mark.parametrize("accounts", ["one account", "with a fallback"])
async def test_a_create_answered_too_late_is_looked_up_not_made_again(
    nats_url: str, accounts: str
) -> None:
    """The create is carried out at Twilio, whose answer comes after the dialer stopped
    waiting. Created again, on the same account or through the fallback, the phone would ring
    twice: the dialer looks the call up instead, and goes on with the call it finds."""
    async with primary_and_fallback(
        nats_url,
        fallback_configured=accounts == "with a fallback",
        TWILIO_REQUEST_TIMEOUT="1",
    ) as (primary, fallback, d, bus):
        to = number(70)
        for sim in (primary, fallback):
            await sim.scenario(to, PRESS_1)
        await primary.faults(create_answer_delay_ms=3000)
        await bus.publish_alert(alert_event(7500, sendto=to))

        async def placed_and_acknowledged() -> bool:
            incident = await d.dialer.engine.load("zabbix:7500")
            if incident is None or incident.status is not IncidentStatus.ACKNOWLEDGED:
                return False
            [page] = incident.pages
            marker = await d.dialer.calls.get(page.call_id or "")
            return marker is not None and marker[0].state == "placed"

        # The marker says placed: the dialer is done with its create (found, or made again).
        await eventually(placed_and_acknowledged, "the call placed, and 1 pressed on it")
        assert (await rung(primary, fallback))[to] == 1
