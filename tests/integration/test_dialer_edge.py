"""TWILIO_EDGE / TWILIO_REGION reach Twilio through the official library: every REST request
(create, fetch, update) is addressed to api.<edge>.<region>.twilio.com, as the simulator sees."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from yobidashi_dialer.telephony.twilio import TwilioTelephony
from yobidashi_testing.stack import (
    FROM_NUMBER,
    Bus,
    alert_event,
    call_request,
    dialer_in_process,
    simulator,
)

pytestmark = pytest.mark.integration

TOKYO = "api.tokyo.jp1.twilio.com"
YAMADA = "+819012345678"


async def test_the_edge_is_used_for_creates_fetches_and_updates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The library would read these by itself; the account's own settings must win.
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    async with simulator() as sim:
        tokyo = TwilioTelephony(
            sim.account_sid, sim.auth_token, api_base_url=sim.base_url, edge="tokyo", region="jp1"
        )
        plain = TwilioTelephony(sim.account_sid, sim.auth_token, api_base_url=sim.base_url)
        try:
            await sim.scenario(YAMADA, {"answer": "human", "answer_after": 1})
            placed = await tokyo.place_call(call_request(YAMADA))
            await tokyo.fetch_call(placed.sid)
            await tokyo.play(placed.sid, "<Response><Say>voicemail</Say></Response>")
            await tokyo.end_call(placed.sid)
            await tokyo.find_calls(YAMADA, FROM_NUMBER, datetime(2000, 1, 1, tzinfo=UTC))
            tokyo_requests = (await sim.http.get("/sim/requests")).json()["requests"]

            await sim.clear()
            other = await plain.place_call(call_request("+819087654321"))
            await plain.fetch_call(other.sid)
            plain_requests = (await sim.http.get("/sim/requests")).json()["requests"]
            [create] = await sim.creates()
        finally:
            await tokyo.close()
            await plain.close()

    operations = [r["operation"] for r in tokyo_requests]
    assert operations == ["create", "fetch", "update", "update", "list"]
    assert {r["host"] for r in tokyo_requests} == {TOKYO}
    # Without an edge, the default host: the process's TWILIO_EDGE did not leak in.
    assert {r["host"] for r in plain_requests} == {"api.twilio.com"}
    assert create["api_host"] == "api.twilio.com"


async def test_the_dialer_places_its_calls_through_the_configured_edge(nats_url: str) -> None:
    async with (
        simulator() as sim,
        dialer_in_process(nats_url, sim, TWILIO_EDGE="tokyo", TWILIO_REGION="jp1"),
        Bus(nats_url) as bus,
    ):
        await sim.scenario(YAMADA, {"answer": "no-answer"})
        await bus.publish_alert(alert_event(1601, sendto="090-1234-5678"))
        await sim.wait_calls(YAMADA, 1)
        [create] = await sim.creates()
    assert create["api_host"] == TOKYO
    assert create["http_status"] == 201
