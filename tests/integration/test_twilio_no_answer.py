"""The Twilio adapter when Twilio does not answer: a request is given up after
TWILIO_REQUEST_TIMEOUT (the official async client alone would wait forever), and the error says
whether the request may still have been carried out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from yobidashi_dialer.telephony import TelephonyError
from yobidashi_dialer.telephony.twilio import TwilioTelephony
from yobidashi_harness.nats_server import free_port
from yobidashi_testing.stack import FROM_NUMBER, call_request, simulator

pytestmark = pytest.mark.integration

TO = "+819012345670"
REQUEST = call_request(TO)


async def test_a_create_answered_late_is_given_up_and_may_have_reached_twilio() -> None:
    async with simulator() as sim:
        # Far longer than the request timeout: without it, the create would simply succeed.
        await sim.faults(create_answer_delay_ms=5_000)
        twilio = TwilioTelephony(
            sim.account_sid, sim.auth_token, api_base_url=sim.base_url, request_timeout=0.5
        )
        try:
            with pytest.raises(TelephonyError) as raised:
                await twilio.place_call(REQUEST)
            await sim.faults()
            found = await twilio.find_calls(TO, FROM_NUMBER, datetime(2000, 1, 1, tzinfo=UTC))
        finally:
            await twilio.close()
    assert raised.value.status is None
    assert raised.value.retryable
    assert raised.value.may_have_reached
    assert len(found) == 1, "the create was carried out although its answer never came"


async def test_a_connection_never_made_carried_nothing() -> None:
    twilio = TwilioTelephony(
        "AC" + "0" * 32, "token", api_base_url=f"http://127.0.0.1:{free_port()}"
    )
    try:
        with pytest.raises(TelephonyError) as raised:
            await twilio.place_call(REQUEST)
    finally:
        await twilio.close()
    assert raised.value.retryable
    assert not raised.value.may_have_reached
