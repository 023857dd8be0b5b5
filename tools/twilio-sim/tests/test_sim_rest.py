"""The REST surface: auth, validation errors, faults, list/fetch/delete, and the OpenAPI spec."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from yobidashi_twilio_sim.spec import (
    SpecValidationError,
    validate_call_list_response,
    validate_call_response,
    validate_create_request,
    validate_update_request,
)
from yobidashi_twilio_sim.testing import Receiver, RunningSim, wait_call_done

TO = "+819012345678"
FROM = "+815012345678"
TWIML = "<Response><Say>Hello</Say></Response>"


def calls_path(sim: RunningSim) -> str:
    return f"/2010-04-01/Accounts/{sim.settings.account_sid}/Calls.json"


def auth(sim: RunningSim, token: str | None = None) -> dict[str, str]:
    pair = f"{sim.settings.account_sid}:{token or sim.settings.auth_token}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def post_create(
    http: httpx.AsyncClient, sim: RunningSim, params: list[tuple[str, str]]
) -> httpx.Response:
    return await http.post(
        calls_path(sim),
        content=urlencode(params),
        headers={**auth(sim), "Content-Type": "application/x-www-form-urlencoded"},
    )


async def test_bad_or_missing_credentials_get_20003(
    sim: RunningSim, http: httpx.AsyncClient
) -> None:
    client = Client(sim.settings.account_sid, "wrong-token")
    client.api.base_url = sim.base_url
    try:
        with pytest.raises(TwilioRestException) as info:
            await asyncio.to_thread(client.calls.create, to=TO, from_=FROM, twiml=TWIML)
    finally:
        client.http_client.session.close()
    assert info.value.status == 401
    assert info.value.code == 20003

    response = await http.get(calls_path(sim))
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    other_account = calls_path(sim).replace(sim.settings.account_sid, "AC" + "f" * 32)
    assert (await http.get(other_account, headers=auth(sim))).status_code == 401
    creates = (await http.get("/sim/creates")).json()["creates"]
    assert [(c["http_status"], c["error_code"]) for c in creates] == [(401, 20003)]


async def test_japanese_local_format_number_is_21211(twilio_client: Any, async_twilio: Any) -> None:
    with pytest.raises(TwilioRestException) as info:
        await asyncio.to_thread(
            twilio_client.calls.create, to="090-1234-5678", from_=FROM, twiml=TWIML
        )
    assert info.value.status == 400
    assert info.value.code == 21211
    with pytest.raises(TwilioRestException) as same:
        await async_twilio.calls.create_async(to=FROM, from_=FROM, twiml=TWIML)
    assert same.value.code == 21211


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ([("From", FROM), ("Twiml", TWIML)], 21201),
        ([("To", TO), ("Twiml", TWIML)], 21213),
        ([("To", TO), ("From", FROM)], 21205),
        ([("To", TO), ("From", FROM), ("Url", "not a url")], 21205),
        ([("To", TO), ("From", "0312345678"), ("Twiml", TWIML)], 21212),
        ([("To", TO), ("From", FROM), ("Twiml", "<Response>" + "x" * 4000 + "</Response>")], 32018),
        ([("To", TO), ("From", FROM), ("Twiml", TWIML), ("StatusCallbackEvent", "hungup")], 21626),
        ([("To", TO), ("From", FROM), ("Twiml", TWIML), ("Method", "PUT")], 20001),
        ([("To", TO), ("From", FROM), ("Twiml", TWIML), ("MachineDetection", "Maybe")], 20001),
        ([("To", TO), ("From", FROM), ("Twiml", TWIML), ("Timeout", "soon")], 20001),
    ],
)
async def test_create_validation_errors(
    sim: RunningSim, http: httpx.AsyncClient, params: list[tuple[str, str]], code: int
) -> None:
    response = await post_create(http, sim, params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert body["message"]


async def test_injected_faults_surface_as_twilio_errors(
    sim: RunningSim, http: httpx.AsyncClient, async_twilio: Any
) -> None:
    put = await http.put("/sim/faults", json={"next_create_statuses": [429, 500]})
    assert put.status_code == 200
    with pytest.raises(TwilioRestException) as too_many:
        await async_twilio.calls.create_async(to=TO, from_=FROM, twiml=TWIML)
    assert too_many.value.status == 429
    assert too_many.value.code == 20429
    with pytest.raises(TwilioRestException) as internal:
        await async_twilio.calls.create_async(to=TO, from_=FROM, twiml=TWIML)
    assert internal.value.code == 20500
    created = await async_twilio.calls.create_async(to=TO, from_=FROM, twiml=TWIML)
    assert created.status == "queued"

    await http.put("/sim/faults", json={"rate_429": 1.0, "latency_ms": 5})
    with pytest.raises(TwilioRestException) as always:
        await async_twilio.calls.create_async(to=TO, from_=FROM, twiml=TWIML)
    assert always.value.code == 20429

    await http.put("/sim/faults", json={"unavailable": True})
    with pytest.raises(TwilioRestException) as down:
        await async_twilio.calls(created.sid).fetch_async()
    assert down.value.status == 503

    await http.put("/sim/faults", json={})
    creates = (await http.get("/sim/creates")).json()["creates"]
    assert [c["http_status"] for c in creates] == [429, 500, 201, 429]
    assert creates[2]["call_sid"] == created.sid


async def test_fetch_list_delete_and_spec_shapes(
    sim: RunningSim, http: httpx.AsyncClient, receiver: Receiver, twilio_client: Any
) -> None:
    other = "+819011112222"
    sids = []
    for number in (TO, other, TO):
        call = await asyncio.to_thread(
            twilio_client.calls.create,
            to=number,
            from_=FROM,
            url=receiver.url("/voice"),
            status_callback=receiver.url("/status"),
            status_callback_event=["initiated", "answered"],
            machine_detection="Enable",
            async_amd="true",
            async_amd_status_callback=receiver.url("/amd"),
            timeout=30,
            time_limit=600,
        )
        sids.append(call.sid)
    for sid in sids:
        await wait_call_done(http, sid)

    # What the official library sent validates against Twilio's own CreateCallRequest.
    creates = (await http.get("/sim/creates")).json()["creates"]
    for create in creates:
        validate_create_request(create["params"])
        assert create["params"]["StatusCallbackEvent"] == ["initiated", "answered"]

    to_calls = await asyncio.to_thread(twilio_client.calls.list, to=TO, page_size=1)
    assert [c.sid for c in to_calls] == [sids[2], sids[0]]  # newest first, across pages
    completed = await asyncio.to_thread(twilio_client.calls.list, status="completed")
    assert len(completed) == 3

    headers = auth(sim)
    page = (await http.get(calls_path(sim), params={"PageSize": 2}, headers=headers)).json()
    validate_call_list_response(page)
    assert page["page_size"] == 2
    assert page["next_page_uri"].endswith("PageSize=2&Page=1")
    assert page["start"] == 0
    assert page["end"] == 1
    for sid in sids:
        resource = (await http.get(calls_path(sim)[:-5] + f"/{sid}.json", headers=headers)).json()
        validate_call_response(resource)
        assert resource["direction"] == "outbound-api"
        assert resource["to_formatted"] in (TO, other)

    deleted = await asyncio.to_thread(twilio_client.calls(sids[0]).delete)
    assert deleted is True
    with pytest.raises(TwilioRestException) as gone:
        await asyncio.to_thread(twilio_client.calls(sids[0]).fetch)
    assert gone.value.status == 404
    assert gone.value.code == 20404


async def test_create_and_update_responses_match_the_spec(
    sim: RunningSim, http: httpx.AsyncClient
) -> None:
    # Rings for long enough to be cancelled: the scenario of the number this test dials (it
    # once set another number's, so under load the call was answered before the cancel came).
    await http.put("/sim/scenarios/+14158675309", json={"answer_after": 1000})
    created = await post_create(
        http,
        sim,
        [("To", "+14158675309"), ("From", "+14158675308"), ("Twiml", TWIML)],
    )
    assert created.status_code == 201
    body = created.json()
    validate_call_response(body)
    assert body["status"] == "queued"
    assert body["to_formatted"] == "(415) 867-5309"
    assert body["uri"] == calls_path(sim)[:-5] + f"/{body['sid']}.json"
    assert body["subresource_uris"]["recordings"].endswith("/Recordings.json")

    update_form = [("Status", "canceled")]
    validate_update_request(dict(update_form))
    updated = await http.post(
        calls_path(sim)[:-5] + f"/{body['sid']}.json",
        content=urlencode(update_form),
        headers={**auth(sim), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert updated.status_code == 200
    validate_call_response(updated.json())
    assert updated.json()["status"] == "canceled"


def test_spec_validators_reject_what_twilio_would() -> None:
    with pytest.raises(SpecValidationError, match="From"):
        validate_create_request({"To": TO, "Twiml": TWIML})
    with pytest.raises(SpecValidationError, match="StatusCallBack"):
        validate_create_request({"To": TO, "From": FROM, "StatusCallBack": "https://x.test/s"})
    validate_create_request({"To": TO, "From": FROM, "StatusCallBack": "x"}, strict=False)
    with pytest.raises(SpecValidationError, match="Timeout"):
        validate_create_request({"To": TO, "From": FROM, "Timeout": "soon"})
    with pytest.raises(SpecValidationError, match="Method"):
        validate_create_request({"To": TO, "From": FROM, "Url": "https://x.test/", "Method": "PUT"})
    with pytest.raises(SpecValidationError, match="Twiml"):
        validate_create_request({"To": TO, "From": FROM, "Twiml": "<Response><Say></Response>"})
    validate_create_request(
        "To=%2B819012345678&From=%2B815012345678&Twiml=%3CResponse%2F%3E"
        "&StatusCallbackEvent=initiated&StatusCallbackEvent=completed&Timeout=30"
    )
    with pytest.raises(SpecValidationError, match="Status"):
        validate_update_request({"Status": "busy"})
    with pytest.raises(SpecValidationError, match="status"):
        validate_call_response({"sid": "CA" + "0" * 32, "status": "answered"})
    with pytest.raises(SpecValidationError, match="date_created"):
        validate_call_response({"date_created": "2024-01-01T00:00:00Z"})
