"""The escalation engine over a real nats-server and the Twilio simulator (waits scaled down)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from yobidashi_common.events import AlertStatus, EscalationExhausted, KeyPressed
from yobidashi_common.subjects import ESCALATIONS_STREAM, KEYS_STREAM
from yobidashi_dialer.core.model import Incident, IncidentStatus
from yobidashi_dialer.store import INCIDENTS, incident_key
from yobidashi_harness.nats_server import free_port
from yobidashi_testing.dialer_stack import dialer_stack, write_oncall
from yobidashi_testing.stack import Bus, Sim, alert_event, dialer_process, eventually, simulator

pytestmark = pytest.mark.integration

PHONES = {f"c{n}": f"+8190200000{n:02d}" for n in range(1, 7)}
CONTACTS = "\n".join(
    f"  - {{id: {cid}, name: {cid.upper()}, phones: ['{phone}']}}" for cid, phone in PHONES.items()
)


def press(key: str) -> dict[str, Any]:
    return {"answer": "human", "answer_after": 1, "digits": [{"after": 0.3, "keys": key}]}


def write_config(tmp_path: Path, steps: str, extra: str = "") -> Path:
    return write_oncall(
        tmp_path,
        f"""contacts:
{CONTACTS}
policies:
  - id: p
    attempts: 2
    steps:
{steps}
{extra}
routes:
  - id: all
    policy: p
""",
    )


async def calls_in_order(sim: Sim) -> list[tuple[str, float]]:
    """(contact, create time) of every call, in order."""
    by_number = {phone: cid for cid, phone in PHONES.items()}
    calls = sorted(await sim.calls(), key=lambda c: c["times"]["created"])
    return [(by_number[c["to"]], c["times"]["created"]) for c in calls]


async def test_five_steps_no_answer_busy_machine_pass_then_ack(
    nats_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        "\n".join(f"      - {{targets: [{{contact: c{n}}}], wait: 4s}}" for n in range(1, 6)),
    )
    async with dialer_stack(nats_url, config) as (sim, d, bus):
        await sim.scenario(PHONES["c1"], {"answer": "no-answer"})
        await sim.scenario(PHONES["c2"], {"answer": "busy"})
        await sim.scenario(PHONES["c3"], {"answer": "machine", "answer_after": 1, "amd_after": 2})
        await sim.scenario(PHONES["c4"], press("2"))
        await sim.scenario(PHONES["c5"], press("1"))
        await bus.publish_alert(alert_event(3001, sendto=None))

        async def acknowledged() -> bool:
            incident = await d.dialer.engine.load("zabbix:3001")
            return incident is not None and incident.status is IncidentStatus.ACKNOWLEDGED

        await eventually(acknowledged, "the 1 on step 5", limit=90)
        calls = await calls_in_order(sim)
        assert [who for who, _ in calls] == ["c1", "c1", "c2", "c2", "c3", "c4", "c5"]
        incident = await d.dialer.engine.load("zabbix:3001")
        assert incident is not None
        timeline = incident.timeline
        steps = [i for i, e in enumerate(timeline) if e.what.startswith("step ")]
        assert [timeline[i].what for i in steps] == [f"step {n}" for n in range(1, 6)]
        # Steps 2 to 4 began when the previous step's wait was over (its timer), nobody having
        # pressed a key; step 5 began in the very transition that recorded the 2, without
        # waiting for step 4's wait. (How long each wait is: the fake-clock unit tests.)
        assert "passed" not in [e.what for e in timeline[: steps[3]]]
        passed = next(e for e in timeline[steps[3] :] if e.what == "passed")
        assert timeline[steps[4]].at == passed.at
        keys = await bus.messages(KEYS_STREAM, "yobidashi.keys.", KeyPressed)
        assert [k.action.value for k in keys] == ["pass", "acknowledge"]
        assert incident.escalation is not None
        assert incident.escalation.step == 4

        # Nobody is called after the 1, not even when step 5's wait is over: wait until the
        # dialer has applied that step's timer, then count the calls.
        step_5_timer = f"timer:{incident.escalation.step_token(incident.key)}"

        async def step_5_over() -> bool:
            now = await d.dialer.engine.load("zabbix:3001")
            return now is not None and step_5_timer in now.applied

        await eventually(step_5_over, "step 5's wait to be over")
        assert len(await sim.calls()) == len(calls), "nobody is called after the 1"


async def test_recovery_during_step_2_ends_everything(nats_url: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "      - {targets: [{contact: c1}], wait: 2s}\n"
        "      - {targets: [{contact: c2}, {contact: c3}], wait: 60s}\n"
        "      - {targets: [{contact: c4}], wait: 2s}",
    )
    async with dialer_stack(nats_url, config, TWILIO_RING_TIMEOUT="200") as (sim, d, bus):
        await sim.scenario(PHONES["c1"], {"answer": "failed"})
        for cid in ("c2", "c3"):
            await sim.scenario(PHONES[cid], {"answer": "human", "answer_after": 190})
        await bus.publish_alert(alert_event(3002, sendto=None))
        ringing = [await sim.wait_calls(PHONES[cid], 1) for cid in ("c2", "c3")]
        for [call] in ringing:
            await sim.wait_status(call["sid"], "ringing")
        await bus.publish_alert(alert_event(3002, status=AlertStatus.RESOLVED))
        for [call] in ringing:
            await sim.wait_status(call["sid"], "canceled", "completed")
        incident = await d.dialer.engine.load("zabbix:3002")
        assert incident is not None
        assert incident.status is IncidentStatus.RESOLVED
        assert await sim.calls(PHONES["c4"]) == [], "step 3 never comes"


async def test_dialer_killed_during_step_2_calls_step_3_once_on_time_though_its_callback_was_lost(
    nats_url: str, tmp_path: Path
) -> None:
    """Step 2's call fails while no dialer is up, so its status callback is lost for good
    (Twilio does not send it again): step 3 still comes when step 2's wait is over."""
    config = write_config(
        tmp_path,
        "      - {targets: [{contact: c1}], wait: 3s}\n"
        "      - {targets: [{contact: c2}], wait: 8s}\n"
        "      - {targets: [{contact: c3}], wait: 3s}",
    )
    port = free_port()
    env = {"YOBIDASHI_CONFIG": str(config), "NATS_ACK_WAIT": "3"}
    async with simulator() as sim, Bus(nats_url) as bus:
        await sim.scenario(PHONES["c1"], {"answer": "failed"})
        await sim.scenario(PHONES["c2"], {"answer": "failed", "answer_after": 5})
        await sim.scenario(PHONES["c3"], press("1"))
        first = dialer_process(nats_url, sim, tmp_path / "d1.log", env, port=port).start()
        first.wait_ready()
        await bus.publish_alert(alert_event(3003, sendto=None))
        [c2] = await sim.wait_calls(PHONES["c2"], 1)
        await eventually(lambda: page_placed(bus, "zabbix:3003", "c2"), "step 2's call recorded")
        first.kill()  # step 2's call rings on; step 3 is due 8 s after step 2 began
        await sim.wait_status(c2["sid"], "failed")  # its callback finds nobody
        second = dialer_process(nats_url, sim, tmp_path / "d2.log", env, port=port).start()
        try:
            second.wait_ready()
            [c3] = await sim.wait_calls(PHONES["c3"], 1, "step 3 after the restart")
            await sim.wait_status(c3["sid"], "completed")
        finally:
            second.stop()
        c2 = await sim.call(c2["sid"])
        [final] = [w for w in c2["webhooks"] if w["params"].get("CallStatus") == "failed"]
        assert final["response_status"] is None, "the status callback was lost"
        step3_due = c2["times"]["created"] + 8  # step 2 began just before its call's create
        lateness = c3["times"]["created"] - step3_due
        print(f"step 3 was placed {lateness:+.2f}s from its due time, across a kill -9")
        assert lateness >= -0.5, "a step never starts before its wait is over"
        assert len(await sim.calls(PHONES["c3"])) == 1


async def page_placed(bus: Bus, problem_key: str, contact: str) -> bool:
    """The dialer has recorded a call placed for ``contact`` (it knows the call's SID)."""
    entry = await (await bus.js.key_value(INCIDENTS.name)).get(incident_key(problem_key))
    incident = Incident.model_validate_json(entry.value)
    return any(p.call_sid for p in incident.pages if p.contact.id == contact)


async def test_a_policy_that_runs_out_reports_it_and_calls_the_fallback(
    nats_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, "      - {targets: [{contact: c1}], wait: 1s}", extra="    fallback: c6"
    )
    async with dialer_stack(nats_url, config) as (sim, d, bus):
        await sim.scenario(PHONES["c1"], {"answer": "failed"})
        await sim.scenario(PHONES["c6"], {"answer": "busy"})
        await bus.publish_alert(alert_event(3004, sendto=None))
        [exhausted] = await eventually(
            lambda: bus.messages(
                ESCALATIONS_STREAM, "yobidashi.escalations.v1.", EscalationExhausted
            ),
            "the policy to run out",
        )
        assert exhausted.policy == "p"
        assert exhausted.problem.source_event_id == "3004"
        assert len(await sim.calls(PHONES["c6"])) == 1, "the fallback is rung once"
        incident = await d.dialer.engine.load("zabbix:3004")
        assert incident is not None
        assert incident.status is IncidentStatus.EXHAUSTED
