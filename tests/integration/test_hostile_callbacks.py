"""Hostile Twilio callbacks against a real dialer, the Twilio simulator and NATS (and, for the
last test, the real Zabbix 6.0 with ingest, dialer and acker as processes).

Already covered elsewhere, not repeated here: a missing signature, a signature made with the
wrong auth token, a signature for another URL, and a garbage signature on the status route
(tests/integration/test_dialer_calls.py::test_forged_or_unsigned_callbacks_get_403_and_publish_nothing).

Here: parameters altered after signing; correctly signed callbacks replayed after the call
ended (captured from the simulator's journal, so they are exactly what "Twilio" sent); correctly
signed callbacks about calls we never placed; a correctly signed 1 for a problem that has
recovered; and, against the real Zabbix, that none of it writes anything there.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from twilio.request_validator import RequestValidator

from yobidashi_common.events import AckResult, AlertStatus, CallStatusChanged, KeyPressed
from yobidashi_common.subjects import ACKS_STREAM, CALLS_STREAM, KEYS_STREAM
from yobidashi_dialer.core.model import IncidentStatus
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_testing import oncall_yaml
from yobidashi_testing.dialer_stack import dialer_stack, write_oncall
from yobidashi_testing.e2e import e2e_stack
from yobidashi_testing.people import ANSWERS_AND_PRESSES_1, YAMADA
from yobidashi_testing.stack import Bus, RunningDialer, Sim, alert_event, eventually

pytestmark = pytest.mark.integration

RINGS_ON: dict[str, Any] = {"answer": "human", "answer_after": 600}
# The dialer's longest ring (600 s) is 30 s on the simulator's clock: long enough that the
# call is still ringing when a slow, loaded machine gets to the test's last check.
RING_LONG = "600"
ACKNOWLEDGED_JA = "確認を受け付けました"
RECOVERED_JA = "すでに復旧しています"


def gather_form(sim: Sim, call_sid: str, digits: str, to: str = YAMADA) -> dict[str, str]:
    """What Twilio posts to a <Gather action>, as the simulator sends it."""
    return {
        "AccountSid": sim.account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "in-progress",
        "Called": to,
        "Caller": "+14155550100",
        "Direction": "outbound-api",
        "From": "+14155550100",
        "To": to,
        "Digits": digits,
        "FinishedOnKey": "",
        "msg": "Gather End",
    }


def sign(sim: Sim, url: str, form: Mapping[str, str]) -> str:
    return str(RequestValidator(sim.auth_token).compute_signature(url, dict(form)))


async def post(url: str, form: Mapping[str, str], signature: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.post(url, data=dict(form), headers={"X-Twilio-Signature": signature})


async def replay(webhook: Mapping[str, Any]) -> httpx.Response:
    """Send a journaled webhook again, byte for byte what the simulator signed."""
    return await post(webhook["url"], webhook["params"], webhook["signature"])


def call_id_of(journal: Mapping[str, Any]) -> str:
    """Our call id, from the StatusCallback URL the dialer gave Twilio."""
    [url] = journal["params"]["StatusCallback"]
    [call_id] = parse_qs(urlsplit(str(url)).query)["call"]
    return call_id


async def keys_on_bus(bus: Bus) -> list[KeyPressed]:
    return await bus.messages(KEYS_STREAM, "yobidashi.keys.v1.", KeyPressed)


async def statuses_on_bus(bus: Bus) -> list[CallStatusChanged]:
    return await bus.messages(CALLS_STREAM, "yobidashi.calls.v1.status.", CallStatusChanged)


async def ringing_call(sim: Sim, d: RunningDialer, bus: Bus, event_id: int) -> dict[str, Any]:
    """A problem whose call rings on (with its SID known to the dialer)."""
    await sim.scenario(YAMADA, RINGS_ON)
    await bus.publish_alert(alert_event(event_id))
    [call] = await sim.wait_calls(YAMADA, 1)
    await sim.wait_status(call["sid"], "ringing")

    async def sid_recorded() -> bool:
        incident = await d.dialer.engine.load(f"zabbix:{event_id}")
        return incident is not None and incident.pages[0].call_sid == call["sid"]

    await eventually(sid_recorded, "the dialer to record the call's SID")
    journal: dict[str, Any] = await sim.call(call["sid"])
    return journal


async def test_parameters_altered_after_signing_are_refused(nats_url: str) -> None:
    async with dialer_stack(nats_url, TWILIO_RING_TIMEOUT=RING_LONG) as (sim, d, bus):
        journal = await ringing_call(sim, d, bus, 701)
        sid = journal["sid"]
        call_id = call_id_of(journal)
        gather = f"{d.url}/twilio/voice/gather?call={call_id}&round=1"
        status = f"{d.url}/twilio/voice/status?call={call_id}"
        amd = f"{d.url}/twilio/voice/amd?call={call_id}"
        press_2 = gather_form(sim, sid, "2")
        press_1 = gather_form(sim, sid, "1")
        other_sid = "CA" + secrets.token_hex(16)
        ringing = {**press_2, "CallStatus": "ringing", "SequenceNumber": "1"}
        human = {"AccountSid": sim.account_sid, "CallSid": sid, "AnsweredBy": "human"}
        del ringing["Digits"]
        forged = [
            # signed for 2 (pass), sent with 1 (acknowledge)
            (gather, sign(sim, gather, press_2), press_1),
            # one parameter added to a correctly signed form
            (gather, sign(sim, gather, press_1), {**press_1, "Digits2": "1"}),
            # one removed
            (gather, sign(sim, gather, press_1), {k: v for k, v in press_1.items() if k != "msg"}),
            # the CallSid changed
            (gather, sign(sim, gather, press_1), {**press_1, "CallSid": other_sid}),
            # a blank value changed, and one left out: blanks are part of the signature
            (gather, sign(sim, gather, press_1), {**press_1, "FinishedOnKey": "#"}),
            (
                gather,
                sign(sim, gather, press_1),
                {k: v for k, v in press_1.items() if k != "FinishedOnKey"},
            ),
            # the round in the signed URL changed
            (gather.replace("round=1", "round=2"), sign(sim, gather, press_1), press_1),
            # status: signed as ringing, sent as completed
            (status, sign(sim, status, ringing), {**ringing, "CallStatus": "completed"}),
            # answering machine: signed human, sent machine
            (amd, sign(sim, amd, human), {**human, "AnsweredBy": "machine_end_beep"}),
        ]
        answers = [await post(url, form, signature) for url, signature, form in forged]
        assert [a.status_code for a in answers] == [403] * len(forged)
        assert await keys_on_bus(bus) == []
        assert {s.status for s in await statuses_on_bus(bus)} <= {"initiated", "ringing"}
        incident = await d.dialer.engine.load("zabbix:701")
        assert incident is not None
        assert incident.status is IncidentStatus.OPEN
        assert (await sim.call(sid))["status"] == "ringing"

        # The control: the same 1, signed for what is sent, is taken. So the 403s above were
        # for the alterations, not for a URL or form this test got wrong.
        taken = await post(gather, press_1, sign(sim, gather, press_1))
        assert taken.status_code == 200
        assert ACKNOWLEDGED_JA in taken.text
        [key] = await keys_on_bus(bus)
        assert (key.digit, key.call_sid) == ("1", sid)


async def test_callbacks_replayed_after_the_call_ended_add_nothing(nats_url: str) -> None:
    # A one-second de-duplication window: the replays below come after it, as a replay days
    # later would, so what stops them is the dialer, not JetStream's Nats-Msg-Id memory.
    async with dialer_stack(nats_url, NATS_DUPLICATE_WINDOW="1", TWILIO_RING_TIMEOUT=RING_LONG) as (
        sim,
        d,
        bus,
    ):
        await sim.scenario(YAMADA, ANSWERS_AND_PRESSES_1)
        await bus.publish_alert(alert_event(702))
        [call] = await sim.wait_calls(YAMADA, 1)
        await sim.wait_status(call["sid"], "completed")

        async def settled() -> Any:
            incident = await d.dialer.engine.load("zabbix:702")
            page = incident.pages[0] if incident else None
            return incident if page and page.call_ended else None

        async def answered_webhooks() -> list[dict[str, Any]] | None:
            webhooks: list[dict[str, Any]] = (await sim.call(call["sid"]))["webhooks"]
            done = all(w["response_status"] is not None for w in webhooks)
            return webhooks if done else None

        before = await eventually(settled, "the call's end to be recorded")
        assert before.status is IncidentStatus.ACKNOWLEDGED
        webhooks = await eventually(answered_webhooks, "every webhook to be answered")
        [key] = await keys_on_bus(bus)
        statuses = await statuses_on_bus(bus)
        gathers = [w for w in webhooks if w["kind"] == "gather-action"]
        assert [w["params"]["Digits"] for w in gathers] == ["1"]
        assert len(webhooks) >= 5  # initiated, ringing, in-progress, the gather, completed
        await asyncio.sleep(2)  # past the de-duplication window (not a timing assertion)

        for attempt in range(2):
            answers = [await replay(w) for w in webhooks]
            assert all(a.status_code in (200, 204) for a in answers), [
                (a.status_code, a.text) for a in answers
            ]
            [gather_answer] = [
                a for a, w in zip(answers, webhooks, strict=True) if w["kind"] == "gather-action"
            ]
            assert ACKNOWLEDGED_JA in gather_answer.text, attempt  # what they heard before
            assert await keys_on_bus(bus) == [key], "a replayed 1 is not a second keypress"
        after = await d.dialer.engine.load("zabbix:702")
        assert after is not None
        assert after.status is IncidentStatus.ACKNOWLEDGED
        assert after.acked_by == before.acked_by
        assert [(p.status, p.call_sid, p.attempt) for p in after.pages] == [
            (p.status, p.call_sid, p.attempt) for p in before.pages
        ]
        assert len(await sim.calls()) == 1, "nobody is rung again"
        replayed = (await statuses_on_bus(bus))[len(statuses) :]
        # Status replays past the window are stored again (Twilio's own retries would be too),
        # but they are the same statuses of the same call and change nothing above.
        assert {(s.call_sid, s.status) for s in replayed} <= {
            (s.call_sid, s.status) for s in statuses
        }


async def test_signed_callbacks_about_calls_we_never_placed_publish_nothing(
    nats_url: str,
) -> None:
    async with dialer_stack(nats_url, TWILIO_RING_TIMEOUT=RING_LONG) as (sim, d, bus):
        journal = await ringing_call(sim, d, bus, 703)
        real_call = call_id_of(journal)
        stranger = "CA" + secrets.token_hex(16)
        base = f"{d.url}/twilio/voice"
        cases = {
            "unknown call id": "?call=0123456789ab-z1-1&round=1",
            "no call id": "?round=1",
            "empty call id": "?call=&round=1",
            "our call id, a SID we never got": f"?call={real_call}&round=1",
        }
        for what, query in cases.items():
            press = gather_form(sim, stranger, "1")
            completed = {**press, "CallStatus": "completed", "SequenceNumber": "3"}
            machine = {"AccountSid": sim.account_sid, "CallSid": stranger, "AnsweredBy": "human"}
            for route, form in (("gather", press), ("status", completed), ("amd", machine)):
                url = f"{base}/{route}{query}"
                answer = await post(url, form, sign(sim, url, form))
                assert answer.status_code in (200, 204), (what, route, answer.status_code)
                if route == "gather":
                    assert ACKNOWLEDGED_JA not in answer.text, what
        assert await keys_on_bus(bus) == []
        assert all(s.call_sid == journal["sid"] for s in await statuses_on_bus(bus))
        incident = await d.dialer.engine.load("zabbix:703")
        assert incident is not None
        assert incident.status is IncidentStatus.OPEN
        assert (await sim.call(journal["sid"]))["status"] == "ringing"


async def test_a_signed_1_after_recovery_is_not_an_acknowledgement(nats_url: str) -> None:
    async with dialer_stack(nats_url, TWILIO_RING_TIMEOUT=RING_LONG) as (sim, d, bus):
        journal = await ringing_call(sim, d, bus, 704)
        await bus.publish_alert(alert_event(704, status=AlertStatus.RESOLVED, seq=2))
        await sim.wait_status(journal["sid"], "canceled", "completed")
        url = f"{d.url}/twilio/voice/gather?call={call_id_of(journal)}&round=1"
        form = gather_form(sim, journal["sid"], "1")
        answer = await post(url, form, sign(sim, url, form))
        assert answer.status_code == 200
        assert RECOVERED_JA in answer.text
        assert await keys_on_bus(bus) == [], "nothing for the acker to write to Zabbix"
        incident = await d.dialer.engine.load("zabbix:704")
        assert incident is not None
        assert incident.status is IncidentStatus.RESOLVED
        assert incident.acked_by is None


async def test_a_late_signed_1_on_an_exhausted_policy_is_taken_not_called_recovered(
    nats_url: str, tmp_path: Path
) -> None:
    """A policy that ran out has not recovered, and still takes acknowledgements
    (Incident.takes_acks): a 1 that arrives late must not hear "already recovered"."""
    config = write_oncall(
        tmp_path,
        oncall_yaml.contacts(oncall_yaml.contact("yamada", "Yamada", YAMADA))
        + oncall_yaml.one_policy_for_every_alert(
            oncall_yaml.step("contact: yamada", wait="1s"), attempts=1
        ),
    )
    async with dialer_stack(nats_url, config, TWILIO_RING_TIMEOUT=RING_LONG) as (sim, d, bus):
        await sim.scenario(YAMADA, {"answer": "human", "answer_after": 1})  # presses nothing
        await bus.publish_alert(alert_event(705, sendto=None))
        [call] = await sim.wait_calls(YAMADA, 1)
        journal = await sim.wait_status(call["sid"], "completed")

        async def exhausted() -> bool:
            incident = await d.dialer.engine.load("zabbix:705")
            return incident is not None and incident.status is IncidentStatus.EXHAUSTED

        await eventually(exhausted, "the policy to run out")
        url = f"{d.url}/twilio/voice/gather?call={call_id_of(journal)}&round=1"
        form = gather_form(sim, call["sid"], "1")
        answer = await post(url, form, sign(sim, url, form))
        assert answer.status_code == 200
        assert RECOVERED_JA not in answer.text, "it has not recovered"
        assert ACKNOWLEDGED_JA in answer.text
        [key] = await keys_on_bus(bus)
        assert key.problems[0].source_event_id == "705"

        async def acknowledged() -> bool:
            incident = await d.dialer.engine.load("zabbix:705")
            return incident is not None and incident.status is IncidentStatus.ACKNOWLEDGED

        await eventually(acknowledged, "the exhausted incident to take the ack")


@pytest.mark.zabbix
@pytest.mark.e2e
async def test_none_of_it_changes_anything_in_the_real_zabbix(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    """Through the real chain (Zabbix → ingest → dialer → acker → Zabbix API): a problem rings
    a phone, recovers, and then every kind of hostile callback arrives. Zabbix's record of the
    event, read with the test's own JSON-RPC client, is the same before and after."""
    phone = "+819011110702"
    async with e2e_stack(
        zabbix_dev,
        tmp_path,
        prefix="e2e-hostile",
        phones=[phone],
        dialer_env={"TWILIO_RING_TIMEOUT": "200"},
    ) as e2e:
        await e2e.sim.scenario(phone, {"answer": "human", "answer_after": 190})
        eventid = await asyncio.to_thread(e2e.fire)
        [call] = await e2e.sim.wait_calls(phone, 1, "Zabbix's webhook to ring the phone")
        await e2e.sim.wait_status(call["sid"], "ringing")
        await asyncio.to_thread(e2e.send, 0)  # the problem recovers
        await asyncio.to_thread(zs.wait_for_resolved, e2e.rpc, eventid)
        journal = await e2e.sim.wait_status(call["sid"], "canceled", "completed")
        before = await asyncio.to_thread(zs.get_event, e2e.rpc, eventid)
        acks_before = await asyncio.to_thread(e2e.acknowledges, eventid)
        assert acks_before == []

        sim, sid, call_id = e2e.sim, call["sid"], call_id_of(journal)
        gather = f"{e2e.dialer.url}/twilio/voice/gather?call={call_id}&round=1"
        press_1 = gather_form(sim, sid, "1", to=phone)
        stranger = gather_form(sim, "CA" + secrets.token_hex(16), "1", to=phone)
        answers = {
            "signed 1 after recovery": await post(gather, press_1, sign(sim, gather, press_1)),
            "signed 2, sent 1": await post(
                gather, press_1, sign(sim, gather, {**press_1, "Digits": "2"})
            ),
            "a SID we never placed": await post(gather, stranger, sign(sim, gather, stranger)),
            "unknown call id": await post(
                gather.replace(call_id, "feedfacecafe-z1-1"),
                press_1,
                sign(sim, gather.replace(call_id, "feedfacecafe-z1-1"), press_1),
            ),
        }
        replays = [await replay(w) for w in journal["webhooks"]]
        assert answers["signed 1 after recovery"].status_code == 200
        assert RECOVERED_JA in answers["signed 1 after recovery"].text
        assert answers["signed 2, sent 1"].status_code == 403
        assert all(a.status_code < 500 for a in [*answers.values(), *replays])

        # The dialer stores a keypress before it answers: none stored means none to write.
        async with Bus(e2e.nats.url) as bus:
            assert await keys_on_bus(bus) == []
            assert await bus.messages(ACKS_STREAM, "yobidashi.acks.v1.", AckResult) == []
        assert "acker.written" not in e2e.acker.log_file.read_text()
        after = await asyncio.to_thread(zs.get_event, e2e.rpc, eventid)
        assert after["acknowledges"] == acks_before
        assert after["acknowledged"] == "0"
        assert after == before, "Zabbix's record of the event is exactly as it was"
        assert len(await e2e.sim.calls(phone)) == 1
