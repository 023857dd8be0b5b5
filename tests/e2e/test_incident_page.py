"""The incident page of a real escalation, in Chromium: what Zabbix's event menu opens."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from yobidashi_dialer.core.model import Incident, IncidentStatus
from yobidashi_testing.browser import chromium, find_chromium
from yobidashi_testing.stack import Bus, alert_event, dialer_in_process, eventually, simulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.skipif(find_chromium() is None, reason="no chromium (make system-deps)"),
]

YAMADA = "+819012345678"
PRESS_1: dict[str, Any] = {
    "answer": "human",
    "answer_after": 2,
    "digits": [{"after": 1, "keys": "1"}],
}


def read_page(url: str, accept_language: str) -> dict[str, str]:
    with chromium() as browser:
        context = browser.new_context(locale=accept_language.split(",")[0])
        page = context.new_page()
        page.set_extra_http_headers({"Accept-Language": accept_language})
        response = page.goto(url)
        assert response is not None
        assert response.status == 200
        return {
            "lang": str(page.get_attribute("html", "lang")),
            "status": page.inner_text("#status"),
            "problem": page.inner_text("#problem"),
            "calls": page.inner_text("#calls"),
            "timeline": page.inner_text("#timeline"),
        }


async def test_the_page_shows_a_real_escalation_in_the_viewers_language(nats_url: str) -> None:
    async with simulator() as sim, dialer_in_process(nats_url, sim) as dialer, Bus(nats_url) as bus:
        await sim.scenario(YAMADA, PRESS_1)
        await bus.publish_alert(
            alert_event(4711, title="ディスク使用率が90%を超えました", host="db01")
        )

        async def acknowledged() -> Incident | None:
            incident = await dialer.dialer.engine.load("zabbix:4711")
            ok = incident is not None and incident.status is IncidentStatus.ACKNOWLEDGED
            return incident if ok else None

        await eventually(acknowledged, "the phone's 1 to acknowledge the problem")
        url = f"{dialer.url}/incidents/4711"
        ja = await asyncio.to_thread(read_page, url, "ja-JP,ja;q=0.9")
        en = await asyncio.to_thread(read_page, f"{url}?lang=en", "ja-JP,ja;q=0.9")

    assert ja["lang"] == "ja"
    assert ja["status"] == "確認済み"
    assert "db01" in ja["problem"]
    assert "4711" in ja["problem"]
    assert "+81 90-****-5678" in ja["calls"]
    timeline = ja["timeline"]
    assert timeline.index("発信") < timeline.index("応答") < timeline.index("電話で確認")
    assert en["lang"] == "en"
    assert en["status"] == "acknowledged"
    assert en["timeline"].index("calling") < en["timeline"].index("acknowledged by phone")
    for page in (ja, en):
        assert YAMADA not in " ".join(page.values())
