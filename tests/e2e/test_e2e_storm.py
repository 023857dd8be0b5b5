"""An alert storm through the real Zabbix: 200 problems in 10 s, routed to one schedule; and the
same storm with the primary Twilio account suspended in the middle of it.

The on-call engineer gets one call per bundle window (the first one at once), and pressing 1
acknowledges every problem the call announced, in Zabbix.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from yobidashi_common.events import KeyPressed
from yobidashi_common.subjects import KEYS_STREAM
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_harness.zabbix_sender import send_values
from yobidashi_testing.chaos.audit import call_id
from yobidashi_testing.e2e import E2E, e2e_stack
from yobidashi_testing.stack import FALLBACK_FROM_NUMBER, Bus, Sim

pytestmark = [pytest.mark.e2e, pytest.mark.zabbix, pytest.mark.integration]

ONCALL = "+819077770001"
PROBLEMS = 200
WINDOW = 8.0
CONFIG = f"""\
contacts:
  - {{id: storm, name: 嵐, phones: ["{ONCALL}"]}}
schedules:
  - id: primary
    timezone: Asia/Tokyo
    layers:
      - rotation: {{type: weekly, start: 2026-01-05T09:00, members: [storm]}}
policies:
  - id: page-primary
    steps:
      - targets: [{{schedule: primary}}]
        wait: 10m
routes:
  - id: everything
    policy: page-primary
    bundle_window: {WINDOW:g}s
"""


def add_storm_triggers(e2e: E2E) -> list[str]:
    """200 trapper items, each with its own trigger, on the scenario's host (bulk calls)."""
    rpc, hostid = e2e.rpc, e2e.scenario.hostid
    keys = [f"storm.value[{n}]" for n in range(PROBLEMS)]
    existing = rpc.call("item.get", {"hostids": [hostid], "search": {"key_": "storm.value"},
                                     "output": ["key_"]})  # fmt: skip
    missing = sorted(set(keys) - {i["key_"] for i in existing})
    if missing:
        items = [
            {"hostid": hostid, "name": k, "key_": k, "type": 2, "value_type": 0} for k in missing
        ]
        rpc.call("item.create", items)
        triggers = [
            {"description": f"storm {k}", "expression": f"last(/{e2e.host}/{k})>5", "priority": 4,
             "manual_close": 1}
            for k in missing
        ]  # fmt: skip
        rpc.call("trigger.create", triggers)
    zs.wait_for_config_sync(
        e2e.host, keys[-1], server_port=e2e.zabbix.server_port, changed_at=time.time()
    )
    return keys


def send(e2e: E2E, keys: list[str], value: float) -> None:
    send_values([(e2e.host, key, value) for key in keys], port=e2e.zabbix.server_port)


def storm_events(e2e: E2E, since: int) -> list[dict[str, Any]]:
    return e2e.rpc.call(  # type: ignore[no-any-return]
        "event.get",
        {
            "hostids": [e2e.scenario.hostid],
            "eventid_from": since + 1,
            "value": 1,
            "source": 0,
            "object": 0,
            "search": {"name": "storm"},
            "output": ["eventid", "acknowledged", "name"],
        },
    )


@pytest.mark.parametrize("primary", ["healthy", "suspended mid-storm"])
async def test_200_problems_in_10s_one_call_per_window_and_1_acknowledges_all(
    zabbix_dev: DevInstance, tmp_path: Path, primary: str
) -> None:
    """Suspended mid-storm: the primary Twilio account refuses every create as a suspended
    account does (20005) once its first call is placed; the fallback account carries the rest,
    and nothing is lost or placed twice."""
    failover = primary != "healthy"
    config = tmp_path / "oncall.yaml"
    config.write_text(CONFIG)
    press_1 = {"answer": "human", "answer_after": 1, "digits": [{"after": 0.5, "keys": "1"}]}
    async with e2e_stack(
        zabbix_dev,
        tmp_path,
        prefix="e2e-storm",
        phones=[ONCALL],
        dialer_env={"YOBIDASHI_CONFIG": str(config), "TWILIO_CPS": "5"},
        with_fallback=failover,
    ) as e2e:
        sims = [e2e.sim, *([e2e.fallback] if e2e.fallback else [])]
        for sim in sims:
            await sim.scenario(ONCALL, press_1)
        keys = await asyncio.to_thread(add_storm_triggers, e2e)
        await asyncio.to_thread(send, e2e, keys, 0)
        since = max((int(e["eventid"]) for e in storm_events(e2e, 0)), default=0)
        suspend = asyncio.create_task(suspend_after_first_call(e2e.sim)) if failover else None
        # 200 problems over 10 seconds, 20 a second
        for start in range(0, PROBLEMS, 20):  # (itertools.batched is 3.12+)
            await asyncio.to_thread(send, e2e, keys[start : start + 20], 10)
            await asyncio.sleep(1)

        async def all_acknowledged() -> list[dict[str, Any]] | None:
            events = await asyncio.to_thread(storm_events, e2e, since)
            done = [e for e in events if e["acknowledged"] == "1"]
            return events if len(events) == PROBLEMS and len(done) == PROBLEMS else None

        try:
            events = await asyncio.wait_for(_poll(all_acknowledged), 240)
            suspended_at = await suspend if suspend else None
        finally:
            await asyncio.to_thread(send, e2e, keys, 0)
        placed = {id(sim): await sim.calls(ONCALL) for sim in sims}
        calls = sorted(
            (c for sim_calls in placed.values() for c in sim_calls),
            key=lambda c: c["times"]["created"],
        )
        created = [c["times"]["created"] for c in calls]
        print(f"{PROBLEMS} problems, {len(calls)} calls at +"
              + ", +".join(f"{t - created[0]:.1f}s" for t in created))  # fmt: skip
        assert len(events) == PROBLEMS
        # A handful of calls, not 200: every problem was announced by exactly one 1, the first
        # call at once and alone, the others as bundles. (How far apart calls are, in
        # seconds, is the fake-clock bundling tests' job: under load a storm takes longer.)
        async with Bus(e2e.nats.url) as bus:
            keys_pressed = await bus.messages(KEYS_STREAM, "yobidashi.keys.v1.", KeyPressed)
        announced_by_call = [len(k.problems) for k in keys_pressed]
        assert len(keys_pressed) == len(calls)
        assert sum(announced_by_call) == PROBLEMS
        assert len({p.problem_key for k in keys_pressed for p in k.problems}) == PROBLEMS
        assert announced_by_call[0] == 1
        assert len(calls) < PROBLEMS / 10, "a handful of calls, not 200"
        bundle = await next(s for s in sims if calls[1] in placed[id(s)]).call(calls[1]["sid"])
        announced = " ".join(s.get("text") or "" for s in bundle["spoken"])
        assert "新しい障害が" in announced  # the bundle's opening
        assert "すべての確認を受け付けました" in announced
        acks = await asyncio.to_thread(zs.acknowledges, e2e.rpc, events[-1]["eventid"])
        assert [a["username"] for a in acks] == [zs.ACKER_USERNAME]
        if e2e.fallback is not None:
            assert suspended_at is not None
            await assert_failed_over(e2e.sim, e2e.fallback, suspended_at)


async def suspend_after_first_call(primary: Sim) -> float:
    """Once the primary has placed a call, it refuses every create as a suspended account."""
    while not await primary.calls(ONCALL):
        await asyncio.sleep(0.1)
    await primary.faults(refuse_creates=20005)
    return time.time()


async def assert_failed_over(primary: Sim, fallback: Sim, suspended_at: float) -> None:
    """No call placed twice across the accounts, and the fallback carried everything after the
    suspension, from its own caller ID."""
    accepted = {
        id(sim): [c for c in await sim.creates() if c["http_status"] == 201]
        for sim in (primary, fallback)
    }
    call_ids = Counter(call_id(c) for creates in accepted.values() for c in creates)
    assert max(call_ids.values()) == 1, f"placed twice: {call_ids.most_common(3)}"
    assert all(c["arrived_at"] < suspended_at for c in accepted[id(primary)])
    assert accepted[id(fallback)], "the fallback placed nothing: no failover happened"
    assert {c["params"]["From"][0] for c in accepted[id(fallback)]} == {FALLBACK_FROM_NUMBER}
    refused = [c["arrived_at"] for c in await primary.creates() if c["http_status"] != 201]
    first_fallback = min(c["arrived_at"] for c in accepted[id(fallback)])
    switch = first_fallback - min(refused, default=first_fallback)
    print(f"primary suspended: {len(refused)} creates refused by it; its first refused create "
          f"to the fallback's first create: {switch:.3f}s")  # fmt: skip


async def _poll(check: Any) -> Any:
    while not (result := await check()):
        await asyncio.sleep(1)
    return result
