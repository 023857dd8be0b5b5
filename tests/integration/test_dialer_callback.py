"""Calling Yobidashi back: an incoming call through the simulator to a running dialer.

The simulator plays the caller's phone (its scenario presses keys), signs the Voice URL request
like Twilio, and journals everything said. The real Zabbix is in ``test_dialer_callback_zabbix``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from yobidashi_common.events import KeyPressed, Severity
from yobidashi_common.subjects import KEYS_STREAM
from yobidashi_dialer.core.model import IncidentStatus
from yobidashi_dialer.voice.callback_phrases import CALLBACK_PHRASES
from yobidashi_harness.nats_server import free_port
from yobidashi_testing.dialer_stack import dialer_stack, write_oncall
from yobidashi_testing.people import TANAKA
from yobidashi_testing.stack import (
    FROM_NUMBER,
    Bus,
    RunningDialer,
    Sim,
    alert_event,
    dialer_process,
    eventually,
    simulator,
)

pytestmark = pytest.mark.integration

STRANGER = "+819099990000"
CONFIG = """\
contacts:
  - {id: tanaka, name: 田中, phones: ["+819044440001"], pin: "4321"}
policies:
  - id: p
    attempts: 1
    steps:
      - targets: [{contact: tanaka}]
        wait: 30m
routes:
  - id: all
    policy: p
"""
NEUTRAL = CALLBACK_PHRASES["ja"].neutral


def press(*keys: str) -> dict[str, Any]:
    """The caller's phone: each entry answers one <Gather>."""
    return {"answer": "human", "digits": [{"after": 0.3, "keys": k} for k in keys]}


async def call_back(sim: Sim, url: str, caller: str, *keys: str) -> dict[str, Any]:
    await sim.scenario(caller, press(*keys))
    started = await sim.call_in(caller, FROM_NUMBER, f"{url}/twilio/voice/incoming")
    journal: dict[str, Any] = await sim.wait_status(started["sid"], "completed")
    return journal


def said(journal: dict[str, Any]) -> str:
    return " ".join(str(s.get("text", "")) for s in journal["spoken"])


async def paged(sim: Sim, bus: Bus, *events: tuple[int, str, Severity, float]) -> None:
    """Tanaka is paged (and misses it) for each (event id, title, severity, started ago)."""
    await sim.scenario(TANAKA, {"answer": "no-answer"})
    for event_id, title, severity, ago in events:
        await bus.publish_alert(
            alert_event(event_id, sendto=None, title=title, severity=severity, started_ago=ago)
        )
    await sim.wait_calls(TANAKA, 1, "tanaka's missed call")


@asynccontextmanager
async def missed_one(
    nats_url: str, tmp_path: Path, event_id: int, **env: str
) -> AsyncIterator[tuple[Sim, RunningDialer]]:
    """The simulator and the dialer on CONFIG, once Tanaka has been paged (and missed it) for
    one problem, ディスク満杯."""
    async with dialer_stack(nats_url, write_oncall(tmp_path, CONFIG), **env) as (sim, d, bus):
        await paged(sim, bus, (event_id, "ディスク満杯", Severity.HIGH, 60))
        yield sim, d


async def test_a_call_back_reads_the_missed_problems_newest_first_and_1_acknowledges_all(
    nats_url: str, tmp_path: Path
) -> None:
    # A wide bundle window: the three problems become one (missed) call.
    async with dialer_stack(
        nats_url, write_oncall(tmp_path, CONFIG), DIAL_CALLBACK="on", DIAL_BUNDLE_WINDOW="2"
    ) as (sim, d, bus):
        await paged(
            sim,
            bus,
            (8101, "ディスク満杯", Severity.DISASTER, 600),
            (8102, "応答遅延", Severity.WARNING, 60),
            (8103, "メモリ不足", Severity.HIGH, 300),
        )

        # The first problem rings at once; the two that came while it rang are bundled into
        # the next call. Tanaka misses both.
        for call in await sim.wait_calls(TANAKA, 2, "the first call and the bundle"):
            await sim.wait_status(call["sid"], "no-answer")
        journal = await call_back(sim, d.url, TANAKA, "1")
        text = said(journal)
        # Newest first: started 1, 5 and 10 minutes ago.
        assert text.index("応答遅延") < text.index("メモリ不足") < text.index("ディスク満杯"), text
        assert "3件" in text
        assert journal["resource"]["direction"] == "inbound"
        assert journal["webhooks"][0]["url"] == f"{d.url}/twilio/voice/incoming"

        async def acknowledged() -> bool:
            for event_id in (8101, 8102, 8103):
                incident = await d.dialer.engine.load(f"zabbix:{event_id}")
                if incident is None or incident.status is not IncidentStatus.ACKNOWLEDGED:
                    return False
            return True

        await eventually(acknowledged, "1 to acknowledge all three")
        incident = await d.dialer.engine.load("zabbix:8102")
        assert incident is not None
        assert incident.acked_by == "田中"
        assert incident.acked_by_id == "tanaka"
        keys = await bus.messages(KEYS_STREAM, "yobidashi.keys.v1.", KeyPressed)
        [pressed] = [k for k in keys if k.call_sid == journal["sid"]]
        assert sorted(p.problem_key for p in pressed.problems) == [
            "zabbix:8101",
            "zabbix:8102",
            "zabbix:8103",
        ]
        assert pressed.contact.id == "tanaka"

        # Nothing open any more: a second call-back hears so, and nothing else.
        again = await call_back(sim, d.url, TANAKA)
        assert said(again) == CALLBACK_PHRASES["ja"].nothing_open


async def test_a_stranger_or_a_withheld_number_hears_one_neutral_sentence(
    nats_url: str, tmp_path: Path
) -> None:
    async with missed_one(nats_url, tmp_path, 8201, DIAL_CALLBACK="on") as (sim, d):
        for caller in (STRANGER, "+266696687"):  # someone else; "anonymous" as Twilio sends it
            journal = await call_back(sim, d.url, caller, "1")
            assert said(journal) == NEUTRAL, journal["spoken"]
            assert journal["digits"] == []  # never asked for a key
        incident = await d.dialer.engine.load("zabbix:8201")
        assert incident is not None
        assert incident.status is IncidentStatus.OPEN


async def test_off_by_default_even_tanaka_hears_only_the_neutral_sentence(
    nats_url: str, tmp_path: Path
) -> None:
    async with missed_one(nats_url, tmp_path, 8301) as (sim, d):
        journal = await call_back(sim, d.url, TANAKA, "1")
        assert said(journal) == NEUTRAL


async def test_an_unsigned_or_forged_incoming_request_is_403_and_says_nothing(
    nats_url: str, tmp_path: Path
) -> None:
    async with (
        missed_one(nats_url, tmp_path, 8401, DIAL_CALLBACK="on") as (sim, d),
        httpx.AsyncClient() as http,
    ):
        url = f"{d.url}/twilio/voice/incoming"
        form = {"CallSid": "CA" + "1" * 32, "From": TANAKA, "To": FROM_NUMBER}
        unsigned = await http.post(url, data=form)
        forged = RequestValidator("not-the-auth-token").compute_signature(url, form)
        wrong = await http.post(url, data=form, headers={"X-Twilio-Signature": forged})
        right = RequestValidator(sim.auth_token).compute_signature(url, form)
        signed = await http.post(url, data=form, headers={"X-Twilio-Signature": right})
        # Signed for a stranger's call, then the caller ID changed to tanaka's.
        stranger = {**form, "From": STRANGER}
        signed_for_stranger = RequestValidator(sim.auth_token).compute_signature(url, stranger)
        altered = await http.post(
            url, data=form, headers={"X-Twilio-Signature": signed_for_stranger}
        )
        assert (unsigned.status_code, wrong.status_code, altered.status_code) == (403, 403, 403)
        assert "ディスク満杯" not in unsigned.text + wrong.text + altered.text
        assert signed.status_code == 200
        assert "ディスク満杯" in signed.text


async def test_the_replica_that_answered_a_call_back_is_killed_the_next_one_takes_the_key(
    nats_url: str, tmp_path: Path
) -> None:
    """kill -9 the dialer while the caller listens to the read-out; a new one on the same
    address takes the keypress: the call is a `CallRecord` in KV, not a process's memory."""
    port = free_port()
    env = {
        "YOBIDASHI_CONFIG": str(write_oncall(tmp_path, CONFIG)),
        "DIAL_CALLBACK": "on",
        "DIAL_GATHER_TIMEOUT": "30",
        "DIAL_MENU_REPEATS": "5",
    }
    async with simulator(time_scale=1.0) as sim, Bus(nats_url) as bus:
        first = dialer_process(nats_url, sim, tmp_path / "first.log", env, port=port)
        await asyncio.to_thread(first.start)
        try:
            await sim.scenario(TANAKA, {"answer": "busy"})
            await bus.publish_alert(alert_event(8501, sendto=None, title="ディスク満杯"))
            [missed] = await sim.wait_calls(TANAKA, 1, "tanaka's missed call")
            await sim.wait_status(missed["sid"], "busy")
            await sim.scenario(TANAKA, {"answer": "human"})  # presses nothing by itself
            started = await sim.call_in(TANAKA, FROM_NUMBER, f"{first.url}/twilio/voice/incoming")

            async def listening() -> bool:
                # Inside the read-out's <Gather>: a key now goes to the dialer.
                phones = (await sim.http.get("/sim/phones")).json()["phones"]
                call = next((p["call"] for p in phones if p["number"] == TANAKA), None)
                return bool(call and call["sid"] == started["sid"] and call["listening"])

            await eventually(listening, "the caller to hear the read-out and the menu")
        finally:
            first.kill()
        second = dialer_process(nats_url, sim, tmp_path / "second.log", env, port=port)
        await asyncio.to_thread(second.start)
        try:
            await sim.press(TANAKA, "1")
            journal = await sim.wait_status(started["sid"], "completed")
            assert "ディスク満杯" in said(journal)
            assert CALLBACK_PHRASES["ja"].neutral not in said(journal)

            async def acknowledged() -> bool:
                async with httpx.AsyncClient() as http:
                    view = (await http.get(f"{second.url}/v1/incidents/8501")).json()
                return bool(view["status"] == "acknowledged")

            await eventually(acknowledged, "the second dialer to take the acknowledgement")
        finally:
            await asyncio.to_thread(second.stop)


async def test_after_five_wrong_pins_even_the_right_one_is_refused(
    nats_url: str, tmp_path: Path
) -> None:
    async with missed_one(nats_url, tmp_path, 8601, DIAL_CALLBACK="pin") as (sim, d):
        prompt = CALLBACK_PHRASES["ja"].pin_prompt
        for guess in ("0000#", "1111#", "2222#", "3333#", "5555#"):
            journal = await call_back(sim, d.url, TANAKA, guess, "1")
            assert said(journal) == f"{prompt} {NEUTRAL}"
        journal = await call_back(sim, d.url, TANAKA, "4321#", "1")
        assert said(journal) == f"{prompt} {NEUTRAL}"  # the right PIN, too late
        incident = await d.dialer.engine.load("zabbix:8601")
        assert incident is not None
        assert incident.status is IncidentStatus.OPEN
