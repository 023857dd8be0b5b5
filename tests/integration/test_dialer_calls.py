"""The dialer against a real nats-server and the Twilio simulator (Zabbix-driven mode)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from yobidashi_common.events import (
    AlertStatus,
    AlertUpdate,
    CallFailed,
    CallStatusChanged,
    KeyPressed,
    UpdateAction,
)
from yobidashi_common.subjects import CALLS_STREAM, KEYS_STREAM
from yobidashi_dialer.core.model import Incident, IncidentStatus, PageStatus
from yobidashi_testing.dialer_stack import dialer_stack
from yobidashi_testing.people import ANSWERS_AND_PRESSES_1, YAMADA
from yobidashi_testing.stack import FROM_NUMBER, Bus, Sim, alert_event, eventually
from yobidashi_twilio_sim.spec import validate_create_request

pytestmark = pytest.mark.integration


def said(journal: dict[str, Any]) -> str:
    return " ".join(s.get("text") or "" for s in journal["spoken"])


async def ringing(sim: Sim, bus: Bus, event_id: int, phone: dict[str, Any]) -> dict[str, Any]:
    """Yamada's phone, which behaves as ``phone`` says, rings for problem ``event_id``: the call."""
    await sim.scenario(YAMADA, phone)
    await bus.publish_alert(alert_event(event_id))
    [call] = await sim.wait_calls(YAMADA, 1)
    await sim.wait_status(call["sid"], "ringing")
    return call


async def test_sendto_rings_e164_reads_japanese_and_key_1_is_one_keypress(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, d, bus):
        await sim.scenario(YAMADA, ANSWERS_AND_PRESSES_1)
        await bus.publish_alert(
            alert_event(
                101, sendto="090-1234-5678", title="ディスク使用率が90%を超えました", host="db01"
            )
        )
        [call] = await sim.wait_calls(YAMADA, 1)
        journal = await sim.wait_status(call["sid"], "completed")

        params = journal["params"]
        assert params["To"] == [YAMADA]
        assert params["From"] == [FROM_NUMBER]
        assert "Url" not in params, "the alert text must not travel in a URL"
        assert set(params["StatusCallbackEvent"]) == {
            "initiated",
            "ringing",
            "answered",
            "completed",
        }
        assert params["AsyncAmd"] == ["true"]
        assert params["MachineDetection"] == ["DetectMessageEnd"]
        validate_create_request(params)

        spoken = [s for s in journal["spoken"] if not s.get("system")]
        assert spoken[0]["language"] == "ja-JP"
        assert "db01" in spoken[0]["text"]
        assert "ディスク使用率が90%を超えました" in spoken[0]["text"]
        assert "重度の障害" in spoken[0]["text"]
        assert "2分前に発生しました" in spoken[0]["text"]
        assert "確認を受け付けました" in said(journal)

        keys = await eventually(
            lambda: bus.messages(KEYS_STREAM, "yobidashi.keys.v1.", KeyPressed), "the keypress"
        )
        assert len(keys) == 1
        assert keys[0].digit == "1"
        assert keys[0].action.value == "acknowledge"
        assert keys[0].problems[0].source_event_id == "101"
        assert keys[0].contact.masked_number == "+81 90-****-5678"

        async def acknowledged() -> bool:
            incident = await d.dialer.engine.load("zabbix:101")
            return incident is not None and incident.status is IncidentStatus.ACKNOWLEDGED

        await eventually(acknowledged, "the incident to be acknowledged")
        statuses = await eventually(
            lambda: bus.messages(
                CALLS_STREAM, "yobidashi.calls.v1.status.completed", CallStatusChanged
            ),
            "the completed status on the bus",
        )
        assert statuses[0].call_sid == call["sid"]


async def test_english_contact_hears_english(nats_url: str) -> None:
    async with dialer_stack(nats_url, DIAL_DEFAULT_LANGUAGE="en") as (sim, _d, bus):
        await sim.scenario(YAMADA, ANSWERS_AND_PRESSES_1)
        await bus.publish_alert(alert_event(102, title="HTTP check failed"))
        [call] = await sim.wait_calls(YAMADA, 1)
        journal = await sim.wait_status(call["sid"], "completed")
        first = journal["spoken"][0]
        assert first["language"] == "en-US"
        assert "Severity high. Host web01. HTTP check failed." in first["text"]
        assert "Acknowledged" in said(journal)


async def test_no_answer_is_redialled_then_the_step_ends_unreached(nats_url: str) -> None:
    async with dialer_stack(nats_url, DIAL_MAX_ATTEMPTS="3") as (sim, d, bus):
        await sim.scenario(YAMADA, {"answer": "no-answer"})
        await bus.publish_alert(alert_event(201))
        calls = await sim.wait_calls(YAMADA, 3)
        for call in calls:
            await sim.wait_status(call["sid"], "no-answer")

        async def unreached() -> Any:
            incident = await d.dialer.engine.load("zabbix:201")
            page = incident.page("z1") if incident else None
            return page if page and page.status is PageStatus.UNREACHED else None

        page = await eventually(unreached, "the page to end unreached")
        assert page.attempt == 3
        assert len(await sim.calls(YAMADA)) == 3, "no fourth call"


async def test_busy_then_answer_on_the_redial(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, d, bus):
        await sim.scenario(YAMADA, [{"answer": "busy"}, ANSWERS_AND_PRESSES_1])
        await bus.publish_alert(alert_event(202))
        calls = await sim.wait_calls(YAMADA, 2)
        await sim.wait_status(calls[1]["sid"], "completed")

        async def acked() -> bool:
            incident = await d.dialer.engine.load("zabbix:202")
            return incident is not None and incident.status is IncidentStatus.ACKNOWLEDGED

        await eventually(acked, "ack on the second call")


async def test_machine_leaves_a_voicemail_and_counts_as_unreached(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, d, bus):
        await sim.scenario(YAMADA, {"answer": "machine", "answer_after": 1, "amd_after": 2})
        await bus.publish_alert(alert_event(301, title="バックアップ失敗"))
        [call] = await sim.wait_calls(YAMADA, 1)
        journal = await sim.wait_status(call["sid"], "completed")
        assert [u["params"].get("Twiml") is not None for u in journal["updates"]] == [True]
        assert "確認をお願いします" in said(journal)  # the voicemail
        assert "バックアップ失敗" in said(journal)

        async def unreached() -> Any:
            incident = await d.dialer.engine.load("zabbix:301")
            page = incident.page("z1") if incident else None
            return page if page and page.status is PageStatus.UNREACHED else None

        page = await eventually(unreached, "machine answer to count as unreached")
        assert page.outcome == "voicemail"
        assert len(await sim.calls(YAMADA)) == 1, "a voicemail is not redialled"


async def test_recovery_while_ringing_ends_the_call(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, _d, bus):
        call = await ringing(sim, bus, 401, {"answer": "human", "answer_after": 600})
        await bus.publish_alert(alert_event(401, status=AlertStatus.RESOLVED))
        journal = await sim.wait_status(call["sid"], "canceled", "completed")
        assert [u["params"].get("Status") for u in journal["updates"]] == [["completed"]]


async def test_ack_in_the_zabbix_ui_while_ringing_stops_the_calling(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, d, bus):
        call = await ringing(sim, bus, 402, {"answer": "no-answer"})
        update = AlertUpdate(actions=[UpdateAction.ACKNOWLEDGED], user="Sato Hanako (sato)")
        await bus.publish_alert(alert_event(402, status=AlertStatus.UPDATED, seq=2, update=update))
        await sim.wait_status(call["sid"], "canceled", "completed")

        async def final_status_applied() -> Incident | None:
            incident = await d.dialer.engine.load("zabbix:402")
            return incident if incident and incident.pages[0].call_ended else None

        incident = await eventually(final_status_applied, "the call's final status")
        assert incident.acked_by == "Sato Hanako (sato)"
        # A no-answer that ends while the page still waits would schedule a redial here.
        assert incident.pages[0].status is PageStatus.CANCELLED
        await asyncio.sleep(5 * d.settings.dial_retry_pause)  # past when a redial would come
        assert len(await sim.calls(YAMADA)) == 1, "no redial after the ack"


async def test_forged_or_unsigned_callbacks_get_403_and_publish_nothing(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, d, bus):
        call = await ringing(sim, bus, 501, {"answer": "human", "answer_after": 600})
        incident = await d.dialer.engine.load("zabbix:501")
        assert incident is not None
        call_id = incident.pages[0].call_id
        form = {"CallSid": call["sid"], "Digits": "1", "AccountSid": sim.account_sid}
        gather = f"{d.url}/twilio/voice/gather?call={call_id}&round=1"
        status = f"{d.url}/twilio/voice/status?call={call_id}"
        wrong = RequestValidator("not-the-auth-token").compute_signature(gather, form)
        other_url = RequestValidator(sim.auth_token).compute_signature(gather + "0", form)
        async with httpx.AsyncClient() as http:
            answers = [
                await http.post(gather, data=form),
                await http.post(gather, data=form, headers={"X-Twilio-Signature": wrong}),
                await http.post(gather, data=form, headers={"X-Twilio-Signature": other_url}),
                await http.post(
                    status,
                    data={**form, "CallStatus": "completed"},
                    headers={"X-Twilio-Signature": "AAAA"},
                ),
            ]
        assert [a.status_code for a in answers] == [403, 403, 403, 403]
        assert await bus.messages(KEYS_STREAM, "yobidashi.keys.", KeyPressed) == []
        completed = await bus.messages(
            CALLS_STREAM, "yobidashi.calls.v1.status.completed", CallStatusChanged
        )
        assert completed == []
        incident = await d.dialer.engine.load("zabbix:501")
        assert incident is not None
        assert incident.status is IncidentStatus.OPEN


async def test_twilio_429_and_500_are_retried_within_the_budget(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, _d, bus):
        await sim.faults(next_create_statuses=[429, 500, 503])
        await sim.scenario(YAMADA, ANSWERS_AND_PRESSES_1)
        await bus.publish_alert(alert_event(601))
        [call] = await sim.wait_calls(YAMADA, 1)
        await sim.wait_status(call["sid"], "completed")
        outcomes = Counter(c["http_status"] for c in await sim.creates())
        assert outcomes == {429: 1, 500: 1, 503: 1, 201: 1}


async def test_invalid_to_at_twilio_is_final_counted_and_on_the_bus(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, d, bus):
        # Our own check accepts it; the simulator (like Twilio) refuses To == From with 21211.
        await bus.publish_alert(alert_event(701, sendto=FROM_NUMBER))
        failed = await eventually(
            lambda: bus.messages(CALLS_STREAM, "yobidashi.calls.v1.failed", CallFailed),
            "a CallFailed event",
        )
        assert failed[0].code == 21211
        assert "21211" in failed[0].reason

        async def unreached() -> bool:
            incident = await d.dialer.engine.load("zabbix:701")
            return bool(incident and incident.pages[0].status is PageStatus.UNREACHED)

        await eventually(unreached, "the page to end unreached")
        assert [c["http_status"] for c in await sim.creates()] == [400]


async def test_invalid_number_is_never_dialled(nats_url: str) -> None:
    async with dialer_stack(nats_url) as (sim, d, bus):
        await bus.publish_alert(alert_event(702, sendto="+1 555-555-0100"))

        async def noted() -> bool:
            incident = await d.dialer.engine.load("zabbix:702")
            return bool(
                incident and incident.timeline and "invalid" in incident.timeline[-1].detail
            )

        await eventually(noted, "the invalid number to be noted")
        assert await sim.creates() == []


async def test_caller_id_is_sticky_per_recipient(nats_url: str) -> None:
    pool = "+14155550100,+14155550101,+14155550102"
    async with dialer_stack(nats_url, TWILIO_FROM_NUMBERS=pool) as (sim, d, bus):
        await sim.scenario(YAMADA, {"answer": "no-answer"})
        await bus.publish_alert(alert_event(801))
        calls = await sim.wait_calls(YAMADA, 2)
        assert calls[0]["from"] == calls[1]["from"] == d.settings.caller_id_for(YAMADA)
