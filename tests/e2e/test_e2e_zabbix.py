"""End to end through the real Zabbix 6.0: a trigger fires, the phone rings, a key is pressed.

Zabbix's own webhook reaches ingest; the dialer rings the number from the user's media through
the Twilio simulator; the acker writes to the Zabbix API. What Zabbix recorded is read with the
test's own JSON-RPC client, never the product's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from yobidashi_common.events import AckResult, AlertEvent, AlertStatus
from yobidashi_common.subjects import ACKS_STREAM, ALERTS_STREAM
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.waiting import wait_until
from yobidashi_harness.zabbix_dev import DevInstance, start_frontend, stop_frontend
from yobidashi_testing.e2e import E2E, e2e_stack
from yobidashi_testing.people import ANSWERS_AND_PRESSES_1
from yobidashi_testing.stack import Bus, eventually
from yobidashi_testing.zabbix_fixtures import every_zabbix_version

pytestmark = [pytest.mark.e2e, pytest.mark.zabbix, pytest.mark.integration]

ONCALL = "+819011110001"
# Rings for longer than a problem takes to recover (ring timeout 200 s x time scale 0.05 = 10 s).
KEEPS_RINGING: dict[str, Any] = {"answer": "human", "answer_after": 190}
LONG_RING = {"TWILIO_RING_TIMEOUT": "200"}


async def alerts_on_bus(e2e: E2E, status: AlertStatus) -> list[AlertEvent]:
    async with Bus(e2e.nats.url) as bus:
        found = await bus.messages(
            ALERTS_STREAM, f"yobidashi.alerts.v1.{status.value}.", AlertEvent
        )
    return found


async def ack_results(e2e: E2E) -> list[AckResult]:
    async with Bus(e2e.nats.url) as bus:
        return await bus.messages(ACKS_STREAM, "yobidashi.acks.v1.", AckResult)


@every_zabbix_version
async def test_pressing_1_acknowledges_the_event_in_zabbix(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    async with e2e_stack(zabbix_dev, tmp_path, prefix="e2e-ack", phones=[ONCALL]) as e2e:
        await e2e.sim.scenario(ONCALL, ANSWERS_AND_PRESSES_1)
        eventid = await asyncio.to_thread(e2e.fire)
        [call] = await e2e.sim.wait_calls(ONCALL, 1, "Zabbix's webhook to ring the on-call phone")
        journal = await e2e.sim.wait_status(call["sid"], "completed")
        spoken = " ".join(s.get("text") or "" for s in journal["spoken"])
        assert e2e.scenario.names.trigger in spoken
        assert e2e.host in spoken
        assert "確認を受け付けました" in spoken

        [ack] = await e2e.wait_acknowledged(eventid)
        assert ack["username"] == zs.ACKER_USERNAME
        assert int(ack["action"]) & 2, "the acknowledge bit"
        assert "Acknowledged by phone" in ack["message"]
        assert "+81 90-****-0001" in ack["message"]
        assert "via Yobidashi" in ack["message"]
        event = zs.get_event(e2e.rpc, eventid)
        assert event["acknowledged"] == "1"

        [result] = await eventually(lambda: ack_results(e2e), "the AckResult")
        assert result.outcome.value == "acknowledged"
        assert result.problem.source_event_id == eventid

        # Our own ack comes back through the media type as an update: known, not news.
        updates = await eventually(
            lambda: alerts_on_bus(e2e, AlertStatus.UPDATED), "Zabbix's update webhook", limit=60
        )
        assert updates[0].update is not None
        assert updates[0].update.from_yobidashi
        assert len(await e2e.sim.calls(ONCALL)) == 1, "nobody is called again"

        # Native in the UI: the webhook tagged the problem with its incident, and the event
        # menu's Yobidashi entry opens the dialer's page for it.
        page = f"{e2e.dialer.url}/incidents/{eventid}"

        def tagged() -> dict[str, Any] | None:
            [problem] = e2e.rpc.call(
                "problem.get",
                {"eventids": [eventid], "output": "extend", "selectTags": "extend"},
            )
            tags = {t["tag"]: t["value"] for t in problem["tags"]}
            return problem if "__yobidashi_url" in tags else None

        problem = await asyncio.to_thread(wait_until, "the webhook's tags", tagged, timeout=60)
        tags = {t["tag"]: t["value"] for t in problem["tags"]}
        assert tags["__yobidashi_incident"] == f"zabbix:{eventid}"
        assert tags["__yobidashi_url"] == page
        assert {"name": "Yobidashi", "url": page} in problem["urls"]
        async with httpx.AsyncClient() as http:
            shown = await http.get(page, headers={"Accept-Language": "ja"})
            acker_metrics = (await http.get(f"{e2e.acker.url}/metrics")).text
        assert shown.status_code == 200
        assert e2e.scenario.names.trigger in shown.text
        assert "電話で確認" in shown.text

        # The acker says which Zabbix it found and how it authenticates to it.
        auth = "header" if zabbix_dev.version != "6.0" else "body"
        info = (
            f'yobidashi_acker_zabbix_info{{auth="{auth}",credential="token",'
            f'version="{zabbix_dev.zabbix_version}"}} 1.0'
        )
        assert info in acker_metrics


@asynccontextmanager
async def a_ringing_problem(
    zabbix_dev: DevInstance, tmp_path: Path, prefix: str
) -> AsyncIterator[tuple[E2E, str, dict[str, Any]]]:
    """The stack, with rings longer than a problem takes to recover, and a fresh problem whose
    call rings and rings: the stack, the problem's event id and the call."""
    async with e2e_stack(
        zabbix_dev, tmp_path, prefix=prefix, phones=[ONCALL], dialer_env=LONG_RING
    ) as e2e:
        await e2e.sim.scenario(ONCALL, KEEPS_RINGING)
        eventid = await asyncio.to_thread(e2e.fire)
        [call] = await e2e.sim.wait_calls(ONCALL, 1)
        await e2e.sim.wait_status(call["sid"], "ringing")
        yield e2e, eventid, call


@every_zabbix_version
async def test_recovery_before_anyone_answers_cancels_the_call(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    async with a_ringing_problem(zabbix_dev, tmp_path, "e2e-recover") as (e2e, eventid, call):
        e2e.send(0)
        journal = await e2e.sim.wait_status(call["sid"], "canceled", "completed")
        assert journal["answered_by"] is None
        assert [u["params"].get("Status") for u in journal["updates"]] == [["completed"]]
        resolved = await alerts_on_bus(e2e, AlertStatus.RESOLVED)
        assert [r.source_event_id for r in resolved] == [eventid]
        assert e2e.acknowledges(eventid) == []


@every_zabbix_version
async def test_ack_in_the_zabbix_ui_while_ringing_stops_the_calling(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    async with a_ringing_problem(zabbix_dev, tmp_path, "e2e-uiack") as (e2e, eventid, call):
        # Admin acknowledges in the UI (through the API, as the frontend does).
        await asyncio.to_thread(zs.acknowledge, e2e.rpc, eventid, "見ています")
        journal = await e2e.sim.wait_status(call["sid"], "canceled", "completed")
        assert journal["answered_by"] is None
        updates = await alerts_on_bus(e2e, AlertStatus.UPDATED)
        update = updates[0].update
        assert update is not None
        assert not update.from_yobidashi
        assert update.message == "見ています"
        # The on-call user may not see Admin, so Zabbix renders {USER.FULLNAME} as
        # "Inaccessible user"; ingest turns that into "unknown".
        assert update.user is None
        acks = e2e.acknowledges(eventid)
        assert [a["username"] for a in acks] == ["Admin"], "Yobidashi wrote nothing"


async def test_zabbix_api_down_when_1_is_pressed_the_ack_lands_once_it_is_back(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    # If PHP is still dying when the acker writes, the write is in doubt (sent, no answer) and
    # the claim is held until stale before anyone writes again: a short stale keeps that case
    # inside the wait below.
    in_doubt = {"ZABBIX_TIMEOUT": "4", "ACKER_CLAIM_STALE": "20"}
    async with e2e_stack(
        zabbix_dev, tmp_path, prefix="e2e-apidown", phones=[ONCALL], acker_env=in_doubt
    ) as e2e:
        await e2e.sim.scenario(ONCALL, ANSWERS_AND_PRESSES_1)
        eventid = await asyncio.to_thread(e2e.fire)  # the API is needed to find the event
        await asyncio.to_thread(stop_frontend, zabbix_dev.config)
        try:
            [call] = await e2e.sim.wait_calls(ONCALL, 1)
            await e2e.sim.wait_status(call["sid"], "completed")  # 1 was pressed
            await asyncio.sleep(5)  # the acker retries against a dead API meanwhile
            assert "acker.retry_later" in e2e.acker.log_file.read_text()
        finally:
            await asyncio.to_thread(start_frontend, zabbix_dev.config)
        acks = await e2e.wait_acknowledged(eventid)
        await asyncio.sleep(5)  # would a second write come?
        acks = e2e.acknowledges(eventid)
        assert len(acks) == 1
        assert acks[0]["username"] == zs.ACKER_USERNAME
