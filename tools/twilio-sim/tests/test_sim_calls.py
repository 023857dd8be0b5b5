"""Call flows end to end: the official twilio client -> simulator -> a real webhook server."""

from __future__ import annotations

import asyncio
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from fastapi.responses import Response
from twilio.base.exceptions import TwilioRestException

from yobidashi_twilio_sim.testing import (
    Hook,
    Receiver,
    RunningSim,
    call_journal,
    eventually,
    wait_call_done,
    wait_status,
)

# twilio 9.13's AsyncTwilioHttpClient still passes aiohttp.BasicAuth as `auth=`, which
# aiohttp 3.14 deprecates; that is the library's business, not the simulator's.

TO = "+819012345678"
FROM = "+815012345678"
ALERT_JA = "サーバー db01 で障害が発生しました。確認する場合は 1 を押してください。"
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


async def set_scenario(http: httpx.AsyncClient, number: str, scenario: Any) -> None:
    response = await http.put(f"/sim/scenarios/{number}", json=scenario)
    response.raise_for_status()


def assert_all_signed(receiver: Receiver) -> None:
    assert receiver.hooks, "no webhook arrived"
    for hook in receiver.hooks:
        assert hook.signature_valid, f"bad signature on {hook.method} {hook.url}"
        assert hook.headers["user-agent"] == "TwilioProxy/1.1"
        assert hook.headers["i-twilio-idempotency-token"]
        if hook.method == "POST":
            assert hook.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_gather_flow_with_sync_client(
    sim: RunningSim, http: httpx.AsyncClient, receiver: Receiver, twilio_client: Any
) -> None:
    await set_scenario(
        http, TO, {"answer": "human", "answer_after": 2, "digits": [{"after": 0.5, "keys": "1"}]}
    )
    action = receiver.on(
        "/ack",
        '<Response><Say language="ja-JP" voice="Polly.Mizuki">了解しました。</Say>'
        "<Hangup/></Response>",
    )
    twiml = (
        f'<Response><Gather numDigits="1" action="{action}" timeout="10">'
        f'<Say language="ja-JP" voice="Polly.Mizuki">{ALERT_JA}</Say></Gather>'
        "<Say>No input.</Say></Response>"
    )
    call = await asyncio.to_thread(
        twilio_client.calls.create,
        to=TO,
        from_=FROM,
        twiml=twiml,
        status_callback=receiver.url("/status"),
        status_callback_event=ALL_EVENTS,
        timeout=30,
    )
    assert call.sid.startswith("CA")
    assert len(call.sid) == 34
    assert call.status == "queued"
    assert call.direction == "outbound-api"

    journal = await wait_call_done(http, call.sid)
    assert journal["status"] == "completed"
    assert_all_signed(receiver)

    callbacks = receiver.at("/status")
    assert [h.params["CallStatus"] for h in callbacks] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [h.params["SequenceNumber"] for h in callbacks] == ["0", "1", "2", "3"]
    for hook in callbacks:
        assert hook.params["CallbackSource"] == "call-progress-events"
        assert parsedate_to_datetime(hook.params["Timestamp"]).utcoffset() is not None
        assert hook.params["CallSid"] == call.sid
        assert hook.params["Direction"] == "outbound-api"
        assert hook.params["ApiVersion"] == "2010-04-01"
        assert hook.params["Caller"] == FROM
        assert hook.params["Called"] == TO
        assert hook.params["FromCity"] == ""  # blank geo params are sent (and signed)
    final = callbacks[-1].params
    assert int(final["CallDuration"]) >= 0
    assert final["SipResponseCode"] == "200"
    assert "Duration" in final
    assert "AnsweredBy" not in final  # AMD was off

    [gather] = receiver.at("/ack")
    assert gather.method == "POST"
    assert gather.params["Digits"] == "1"
    assert gather.params["FinishedOnKey"] == ""
    assert gather.params["msg"] == "Gather End"
    assert gather.params["CallStatus"] == "in-progress"

    spoken = [(s["text"], s["language"]) for s in journal["spoken"]]
    assert spoken == [(ALERT_JA, "ja-JP"), ("了解しました。", "ja-JP")]
    assert journal["digits"][0]["keys"] == "1"
    assert journal["times"]["answered"] >= journal["times"]["dialled"]
    assert journal["times"]["dialled"] >= journal["times"]["created"]

    fetched = await asyncio.to_thread(twilio_client.calls(call.sid).fetch)
    assert fetched.status == "completed"
    assert fetched.duration == final["CallDuration"]


async def test_url_flow_with_async_client_relative_action_and_get_callbacks(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(http, TO, {"answer_after": 0.5, "digits": [{"after": 0.2, "keys": "12#"}]})
    receiver.on(
        "/hooks/voice",
        '<Response><Gather action="done" method="POST"><Say>Enter the code</Say></Gather>'
        "</Response>",
    )
    receiver.on("/hooks/done", "<Response><Say>Thanks</Say></Response>")
    call = await async_twilio.calls.create_async(
        to=TO,
        from_=FROM,
        url=receiver.url("/hooks/voice?tenant=a%20b"),
        method="GET",
        status_callback=receiver.url("/hooks/status"),
        status_callback_method="GET",
    )
    journal = await wait_call_done(http, call.sid)
    assert journal["status"] == "completed"
    assert_all_signed(receiver)

    [voice] = receiver.at("/hooks/voice")
    assert voice.method == "GET"
    assert voice.params["tenant"] == "a b"
    assert voice.params["CallStatus"] == "in-progress"
    [done] = receiver.at("/hooks/done")  # relative action resolved against the document URL
    assert done.params["Digits"] == "12"
    assert done.params["FinishedOnKey"] == "#"
    # No StatusCallbackEvent: only `completed` is sent.
    [status] = receiver.at("/hooks/status")
    assert status.method == "GET"
    assert status.params["CallStatus"] == "completed"
    assert status.params["SequenceNumber"] == "3"  # unsent events still take numbers


@pytest.mark.parametrize(
    ("scenario", "final", "sip"),
    [
        ({"answer": "no-answer"}, "no-answer", "487"),
        ({"answer": "busy", "answer_after": 1}, "busy", "486"),
        ({"answer": "failed", "answer_after": 0}, "failed", "500"),
        ({"answer": "human", "answer_after": 30}, "no-answer", "487"),  # rings past Timeout
    ],
)
async def test_unanswered_outcomes(
    http: httpx.AsyncClient,
    receiver: Receiver,
    async_twilio: Any,
    scenario: dict[str, Any],
    final: str,
    sip: str,
) -> None:
    await set_scenario(http, TO, scenario)
    call = await async_twilio.calls.create_async(
        to=TO,
        from_=FROM,
        url=receiver.url("/voice"),
        timeout=20,
        status_callback=receiver.url("/status"),
        status_callback_event=ALL_EVENTS,
    )
    journal = await wait_call_done(http, call.sid)
    assert journal["status"] == final
    assert receiver.at("/voice") == []  # never answered, so no TwiML was fetched
    statuses = [h.params["CallStatus"] for h in receiver.at("/status")]
    assert statuses == ["initiated", "ringing", final]
    last = receiver.at("/status")[-1].params
    assert last["SipResponseCode"] == sip
    assert last["CallDuration"] == "0"
    assert last["Duration"] == "0"
    fetched = await async_twilio.calls(call.sid).fetch_async()
    assert fetched.status == final
    assert fetched.duration is None
    assert_all_signed(receiver)


async def test_machine_with_async_amd(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(http, TO, {"answer": "machine", "answer_after": 1, "amd_after": 3})
    receiver.on("/voice", '<Response><Pause length="5"/><Say>Message</Say></Response>')
    call = await async_twilio.calls.create_async(
        to=TO,
        from_=FROM,
        url=receiver.url("/voice"),
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=receiver.url("/amd"),
        status_callback=receiver.url("/status"),
    )
    journal = await wait_call_done(http, call.sid)
    assert_all_signed(receiver)
    [voice] = receiver.at("/voice")
    assert "AnsweredBy" not in voice.params  # async AMD: TwiML is fetched at once
    [amd] = await eventually(lambda: receiver.at("/amd"), "the AMD callback")
    assert amd.params["AnsweredBy"] == "machine_end_beep"
    assert amd.params["CallSid"] == call.sid
    assert int(amd.params["MachineDetectionDuration"]) > 0
    [completed] = receiver.at("/status")
    assert completed.params["AnsweredBy"] == "machine_end_beep"
    assert journal["answered_by"] == "machine_end_beep"
    assert (await async_twilio.calls(call.sid).fetch_async()).answered_by == "machine_end_beep"


async def test_sync_amd_puts_answered_by_on_first_fetch(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(http, TO, {"answer": "human", "answer_after": 0.5})
    receiver.on("/voice", "<Response><Say>Hello</Say></Response>")
    call = await async_twilio.calls.create_async(
        to=TO,
        from_=FROM,
        url=receiver.url("/voice"),
        machine_detection="Enable",
        status_callback=receiver.url("/status"),
    )
    await wait_call_done(http, call.sid)
    [voice] = receiver.at("/voice")
    assert voice.params["AnsweredBy"] == "human"
    assert int(voice.params["MachineDetectionDuration"]) > 0
    assert receiver.at("/status")[-1].params["AnsweredBy"] == "human"


async def test_star_repeats_the_message_via_redirect(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(
        http,
        TO,
        {"digits": [{"after": 0.1, "keys": "*"}, {"after": 0.1, "keys": "1"}]},
    )
    menu = (
        '<Response><Gather numDigits="1" action="/menu"><Say>Alert. Press 1 to acknowledge, '
        "star to repeat.</Say></Gather></Response>"
    )
    receiver.on("/voice", menu)

    def on_menu(hook: Hook) -> str:
        if hook.params["Digits"] == "*":
            return '<Response><Redirect method="GET">/voice</Redirect></Response>'
        return "<Response><Say>Acknowledged</Say><Hangup/></Response>"

    receiver.on("/menu", on_menu)
    call = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/voice"))
    journal = await wait_call_done(http, call.sid)
    assert_all_signed(receiver)
    assert [(h.path, h.method) for h in receiver.hooks] == [
        ("/voice", "POST"),
        ("/menu", "POST"),
        ("/voice", "GET"),
        ("/menu", "POST"),
    ]
    assert [h.params.get("Digits") for h in receiver.at("/menu")] == ["*", "1"]
    assert [w["kind"] for w in journal["webhooks"]] == [
        "url",
        "gather-action",
        "redirect",
        "gather-action",
    ]
    assert [s["text"] for s in journal["spoken"]][-1] == "Acknowledged"


async def test_scenario_list_first_no_answer_then_acknowledge(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(
        http,
        TO,
        [{"answer": "no-answer"}, {"answer": "human", "digits": [{"keys": "1"}]}],
    )
    receiver.on("/voice", '<Response><Gather numDigits="1" action="/ack"/></Response>')
    first = await async_twilio.calls.create_async(
        to=TO, from_=FROM, url=receiver.url("/voice"), timeout=10
    )
    assert (await wait_call_done(http, first.sid))["status"] == "no-answer"
    second = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/voice"))
    assert (await wait_call_done(http, second.sid))["status"] == "completed"
    assert [h.params["Digits"] for h in receiver.at("/ack")] == ["1"]
    third = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/voice"))
    await wait_call_done(http, third.sid)  # the last scenario repeats
    assert [h.params["Digits"] for h in receiver.at("/ack")] == ["1", "1"]


async def test_update_ringing_in_progress_and_finished_calls(
    http: httpx.AsyncClient, receiver: Receiver, twilio_client: Any
) -> None:
    await set_scenario(http, TO, {"answer": "human", "answer_after": 500})
    ringing = await asyncio.to_thread(
        twilio_client.calls.create,
        to=TO,
        from_=FROM,
        url=receiver.url("/voice"),
        timeout=600,
        status_callback=receiver.url("/status"),
    )
    await wait_status(http, ringing.sid, "ringing")
    updated = await asyncio.to_thread(twilio_client.calls(ringing.sid).update, status="completed")
    assert updated.status == "canceled"  # never answered (unverified against live Twilio)
    await wait_call_done(http, ringing.sid)
    assert receiver.at("/status")[-1].params["CallStatus"] == "canceled"

    other = "+819011112222"
    await set_scenario(http, other, {"answer": "human", "answer_after": 0.5})
    receiver.on("/long", '<Response><Pause length="6000"/></Response>')
    talking = await asyncio.to_thread(
        twilio_client.calls.create, to=other, from_=FROM, url=receiver.url("/long")
    )
    await wait_status(http, talking.sid, "in-progress")
    not_canceled = await asyncio.to_thread(
        twilio_client.calls(talking.sid).update, status="canceled"
    )
    assert not_canceled.status == "in-progress"  # canceled does not touch a live call
    hung_up = await asyncio.to_thread(twilio_client.calls(talking.sid).update, status="completed")
    assert hung_up.status == "completed"
    journal = await wait_call_done(http, talking.sid)
    assert journal["call_duration"] is not None

    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(
            twilio_client.calls(talking.sid).update, twiml="<Response><Say>x</Say></Response>"
        )
    assert info.value.status == 400
    assert info.value.code == 21220


async def test_update_with_twiml_redirects_a_live_call_at_once(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    receiver.on("/long", '<Response><Say>Waiting</Say><Pause length="6000"/></Response>')
    call = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/long"))
    await wait_status(http, call.sid, "in-progress")
    await eventually(lambda: _activity_is(http, call.sid, "pausing"), "the pause")
    await async_twilio.calls(call.sid).update_async(
        twiml='<Response><Say language="ja-JP">転送しました</Say></Response>'
    )
    journal = await wait_call_done(http, call.sid)
    assert journal["status"] == "completed"
    assert [s["text"] for s in journal["spoken"]] == ["Waiting", "転送しました"]


async def _activity_is(http: httpx.AsyncClient, sid: str, activity: str) -> bool:
    return bool((await call_journal(http, sid))["activity"] == activity)


async def test_external_keypress_reaches_the_current_gather(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(http, TO, {"answer": "human", "answer_after": 0.5})
    receiver.on(
        "/voice",
        '<Response><Say language="ja-JP">障害です</Say>'
        '<Gather numDigits="1" timeout="600" action="/ack"><Say>Press a key</Say></Gather>'
        "</Response>",
    )
    call = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/voice"))

    async def listening() -> dict[str, Any] | None:
        phones = (await http.get("/sim/phones")).json()["phones"]
        for phone in phones:
            if phone["number"] == TO and phone["call"] and phone["call"]["listening"]:
                return dict(phone)
        return None

    phone = await eventually(listening, "the Gather to listen")
    assert phone["call"]["sid"] == call.sid
    assert phone["call"]["spoken"][0] == {"text": "障害です", "language": "ja-JP"}
    response = await http.post(f"/sim/phones/{TO}/digits", json={"digits": "7"})
    assert response.status_code == 200
    assert response.json()["delivered"] == "gather"
    journal = await wait_call_done(http, call.sid)
    [ack] = receiver.at("/ack")
    assert ack.params["Digits"] == "7"
    assert journal["digits"][0]["source"] == "external"
    assert (await http.post(f"/sim/phones/{TO}/digits", json={"digits": "1"})).status_code == 404


async def test_digits_by_call_sid_are_buffered_until_the_next_gather(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(http, TO, {"answer": "human", "answer_after": 0.5})
    receiver.on(
        "/voice",
        '<Response><Pause length="6000"/><Gather numDigits="2" action="/ack"/></Response>',
    )
    call = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/voice"))
    await eventually(lambda: _activity_is(http, call.sid, "pausing"), "the pause")
    pressed = await http.post(f"/sim/calls/{call.sid}/digits", json={"digits": "42"})
    assert pressed.json()["delivered"] == "buffered"
    await async_twilio.calls(call.sid).update_async(
        twiml='<Response><Gather numDigits="2" action="' + receiver.url("/ack") + '"/></Response>'
    )
    await wait_call_done(http, call.sid)
    assert [h.params["Digits"] for h in receiver.at("/ack")] == ["42"]


async def test_failing_twiml_uses_fallback_then_application_error(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    receiver.on("/broken", lambda hook: plain_response(500, "oops"))
    receiver.on("/fallback", "<Response><Say>Fallback speaking</Say></Response>")
    with_fallback = await async_twilio.calls.create_async(
        to=TO, from_=FROM, url=receiver.url("/broken"), fallback_url=receiver.url("/fallback")
    )
    journal = await wait_call_done(http, with_fallback.sid)
    [fallback] = receiver.at("/fallback")
    assert fallback.params["ErrorCode"] == "11200"
    assert fallback.params["ErrorUrl"] == receiver.url("/broken")
    assert [s["text"] for s in journal["spoken"]] == ["Fallback speaking"]
    assert journal["errors"][0]["code"] == 11200

    receiver.on("/not-twiml", lambda hook: plain_response(200, "{}", "application/json"))
    plain = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/not-twiml"))
    journal = await wait_call_done(http, plain.sid)
    assert journal["status"] == "completed"
    assert journal["spoken"][-1]["text"] == "An application error has occurred."
    assert journal["errors"][0]["code"] == 12300

    receiver.on("/bad-verb", "<Response><Speak>hi</Speak></Response>")
    bad = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/bad-verb"))
    journal = await wait_call_done(http, bad.sid)
    assert journal["errors"][0]["code"] == 12100
    assert journal["webhooks"][0]["response_body"] == "<Response><Speak>hi</Speak></Response>"


def plain_response(status: int, body: str, media_type: str = "text/plain") -> Response:
    return Response(body, status_code=status, media_type=media_type)


async def test_concurrency_limit_fails_the_extra_call(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    assert (await http.put("/sim/settings", json={"max_concurrent_calls": 1})).status_code == 200
    receiver.on("/long", '<Response><Pause length="6000"/></Response>')
    first = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/long"))
    await wait_status(http, first.sid, "in-progress")
    second = await async_twilio.calls.create_async(
        to="+819099998888",
        from_=FROM,
        url=receiver.url("/long"),
        status_callback=receiver.url("/s"),
    )
    journal = await wait_call_done(http, second.sid)
    assert journal["status"] == "failed"
    assert journal["errors"][0]["code"] == 10004
    assert receiver.at("/s")[-1].params["CallStatus"] == "failed"
    await async_twilio.calls(first.sid).update_async(status="completed")
    await wait_call_done(http, first.sid)


async def test_gather_without_input_falls_through_or_posts_empty_result(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    receiver.on(
        "/voice",
        '<Response><Gather numDigits="1" timeout="2" action="/never"><Play>https://x.test/a.mp3'
        '</Play></Gather><Say loop="2">No input.</Say>'
        '<Gather timeout="1" action="/empty" actionOnEmptyResult="true"/></Response>',
    )
    receiver.on("/empty", "<Response><Say>Empty result posted.</Say></Response>")
    call = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/voice"))
    journal = await wait_call_done(http, call.sid)
    assert receiver.at("/never") == []
    [empty] = receiver.at("/empty")
    assert empty.params["Digits"] == ""
    assert empty.params["msg"] == "Gather End"
    assert [(s["verb"], s.get("text", s.get("url"))) for s in journal["spoken"]] == [
        ("Play", "https://x.test/a.mp3"),
        ("Say", "No input."),
        ("Say", "No input."),
        ("Say", "Empty result posted."),
    ]


async def test_time_limit_ends_the_call(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    receiver.on("/long", '<Response><Pause length="6000"/></Response>')
    call = await async_twilio.calls.create_async(
        to=TO, from_=FROM, url=receiver.url("/long"), time_limit=3
    )
    journal = await wait_call_done(http, call.sid)
    assert journal["status"] == "completed"
    assert journal["errors"][-1]["message"] == "TimeLimit reached"


async def test_callee_hangup_and_journal_reset(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    await set_scenario(http, TO, {"answer_after": 0.5, "hangup_after": 2})
    receiver.on("/long", '<Response><Pause length="6000"/></Response>')
    call = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/long"))
    journal = await wait_call_done(http, call.sid)
    assert journal["status"] == "completed"
    assert (await http.delete("/sim/journal")).status_code == 204
    assert (await http.get("/sim/calls")).json() == {"calls": []}
    assert (await http.get("/sim/creates")).json() == {"creates": []}


async def test_held_dialling_keeps_accepted_calls_queued_until_released(
    http: httpx.AsyncClient, receiver: Receiver, async_twilio: Any
) -> None:
    """As when Twilio's carrier side is down: the create is accepted, the call never rings."""
    assert (await http.put("/sim/settings", json={"dialling_held": True})).status_code == 200
    await set_scenario(http, TO, {"answer": "no-answer"})
    held = await async_twilio.calls.create_async(
        to=TO, from_=FROM, url=receiver.url("/voice"), status_callback=receiver.url("/s")
    )
    assert held.status == "queued"
    # Two more requests served: an unheld first call would have left the queue by now.
    later = await async_twilio.calls.create_async(to=TO, from_=FROM, url=receiver.url("/voice"))
    for sid in (held.sid, later.sid):
        fetched = await async_twilio.calls(sid).fetch_async()
        assert fetched.status == "queued"
    assert receiver.at("/s") == []
    assert (await http.put("/sim/settings", json={"dialling_held": False})).status_code == 200
    await wait_status(http, held.sid, "ringing")
    await async_twilio.calls(held.sid).update_async(status="canceled")
    await async_twilio.calls(later.sid).update_async(status="canceled")
    for sid in (held.sid, later.sid):
        assert (await wait_call_done(http, sid))["status"] == "canceled"
