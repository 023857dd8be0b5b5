"""Two engineers whose numbers share their last four digits are two people (issue 11).

The scenario that was found, through a real nats-server and the Twilio simulator: A
(090-1111-5678) gets a problem, B (090-2222-5678) gets one while A is on the phone with us, and
A gets a second one. 0.1 keyed both by the masked ``+81 90-****-5678``: B's problem and A's
second were held behind A's call and then rung as one bundle to one of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from yobidashi_common.bus import kv_key
from yobidashi_common.events import KeyPressed
from yobidashi_common.subjects import KEYS_STREAM
from yobidashi_dialer.core.model import Incident, IncidentStatus
from yobidashi_dialer.store import DIALS_SUBJECT, INCIDENTS
from yobidashi_testing.stack import Bus, Sim, alert_event, dialer_in_process, eventually, simulator

pytestmark = pytest.mark.integration

A = "+819011115678"
B = "+819022225678"
LEGACY = json.loads(
    (
        Path(__file__).resolve().parents[2] / "services/dialer/tests/data/legacy_0_1/state.json"
    ).read_text()
)
PRESS_1: dict[str, Any] = {
    "answer": "human",
    "answer_after": 2,
    "digits": [{"after": 1, "keys": "1"}],
}
# Answers and listens, and presses nothing until the test presses for them.
LISTEN: dict[str, Any] = {"answer": "human", "answer_after": 2}


def said(journal: dict[str, Any]) -> str:
    return " ".join(s.get("text") or "" for s in journal["spoken"] if not s.get("system"))


async def journals(sim: Sim, number: str) -> list[dict[str, Any]]:
    return [await sim.call(c["sid"]) for c in sorted(await sim.calls(number), key=_created)]


def _created(call: dict[str, Any]) -> float:
    return float(call["times"]["created"])


async def test_a_and_b_each_hear_only_their_own_problems_and_bs_1_acks_only_bs(
    nats_url: str,
) -> None:
    async with (
        # Slower than the usual 0.05: A listens (up to 5 x 30 simulated seconds) until the
        # test presses A's key itself.
        simulator(time_scale=0.2) as sim,
        dialer_in_process(
            nats_url, sim, DIAL_BUNDLE_WINDOW="1", DIAL_GATHER_TIMEOUT="30", DIAL_MENU_REPEATS="5"
        ) as dialer,
        Bus(nats_url) as bus,
    ):
        await sim.scenario(A, [LISTEN, PRESS_1])
        await sim.scenario(B, PRESS_1)
        await bus.publish_alert(alert_event(7101, sendto="090-1111-5678", title="A の一つ目"))
        [a_first] = await sim.wait_calls(A, 1)
        await sim.wait_status(a_first["sid"], "in-progress")

        # While A is on the phone with us: B's problem, then A's second.
        await bus.publish_alert(alert_event(7102, sendto="090-2222-5678", title="B の障害"))
        await bus.publish_alert(alert_event(7103, sendto="090-1111-5678", title="A の二つ目"))
        [b_call] = await sim.wait_calls(B, 1, "B's own call, not held behind A's")
        b_journal = await sim.wait_status(b_call["sid"], "completed")
        assert "B の障害" in said(b_journal)
        assert "A の" not in said(b_journal)
        assert (await sim.call(a_first["sid"]))["status"] == "in-progress", "A is still on"

        await sim.press(A, "1")
        await sim.wait_status(a_first["sid"], "completed")
        a_calls = await sim.wait_calls(A, 2, "A's second problem, rung to A")
        await sim.wait_status(a_calls[-1]["sid"], "completed")

        a_journals = await journals(sim, A)
        assert ["A の一つ目" in said(j) for j in a_journals] == [True, False]
        assert ["A の二つ目" in said(j) for j in a_journals] == [False, True]
        assert not any("B の障害" in said(j) for j in a_journals)
        assert len(await sim.calls(B)) == 1

        keys = await eventually(
            lambda: _keys_when(bus, 3), "three keypresses (B's, then A's twice)"
        )
        by_person = {(k.contact.id, tuple(p.problem_key for p in k.problems)) for k in keys}
        assert by_person == {
            ("tel:+819022225678", ("zabbix:7102",)),
            ("tel:+819011115678", ("zabbix:7101",)),
            ("tel:+819011115678", ("zabbix:7103",)),
        }
        assert all(k.contact.masked_number == "+81 90-****-5678" for k in keys)
        engine = dialer.dialer.engine
        for event_id, who in (("7101", A), ("7102", B), ("7103", A)):

            async def acknowledged(key: str = f"zabbix:{event_id}") -> Incident | None:
                incident = await engine.load(key)
                return (
                    incident
                    if incident and incident.status is IncidentStatus.ACKNOWLEDGED
                    else None
                )

            incident = await eventually(acknowledged, f"{event_id} acknowledged")
            assert incident.acked_by_id == f"tel:{who}"


async def _keys_when(bus: Bus, count: int) -> list[KeyPressed] | None:
    keys = await bus.messages(KEYS_STREAM, "yobidashi.keys.v1.", KeyPressed)
    return keys if len(keys) >= count else None


async def test_state_from_0_1_is_rebuilt_per_person_and_still_rings_the_right_phones(
    nats_url: str,
) -> None:
    """What 0.1 left in JetStream (three incidents and their queued dial requests, all three
    under one masked-number id) is picked up by today's dialer: nobody's problems are mixed."""
    async with simulator() as sim:
        async with dialer_in_process(nats_url, sim):
            pass  # creates the streams and buckets, as the 0.1 dialer had
        async with Bus(nats_url) as bus:
            kv = await bus.js.key_value(INCIDENTS.name)
            for name in ("a1", "b1", "a2"):
                incident = LEGACY[name]["incident"]
                await kv.put(kv_key(incident["key"]), json.dumps(incident).encode())
            for name in ("a1", "b1", "a2"):
                request = LEGACY[name]["dial_request"]
                await bus.js.publish(
                    DIALS_SUBJECT,
                    json.dumps(request).encode(),
                    headers={"Nats-Msg-Id": f"dial.{request['call_id']}"},
                )
        await sim.scenario(A, PRESS_1)
        await sim.scenario(B, PRESS_1)
        async with dialer_in_process(nats_url, sim, DIAL_BUNDLE_WINDOW="1"):
            [b_call] = await sim.wait_calls(B, 1)
            b_journal = await sim.wait_status(b_call["sid"], "completed")

            async def both_of_as_problems_announced() -> str | None:
                text = " ".join(said(j) for j in await journals(sim, A))
                return text if "A の一つ目の障害" in text and "A の二つ目の障害" in text else None

            a_text = await eventually(both_of_as_problems_announced, "A hears both of A's")
        assert "B の障害" in said(b_journal)
        assert "A の" not in said(b_journal)
        assert "B の障害" not in a_text
        assert len(await sim.calls(B)) == 1
