"""Holiday duty in a running dialer: a holiday layer picks who is rung, over the real bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from yobidashi_testing import oncall_yaml
from yobidashi_testing.dialer_stack import dialer_stack, write_oncall
from yobidashi_testing.stack import alert_event

pytestmark = pytest.mark.integration

PHONES = {"tanaka": "+819055550001", "suzuki": "+819055550003"}


def config(holidays: list[str]) -> str:
    """Weekday duty never on holidays, holiday duty only on them; ``holidays`` are the YAML's
    own extra days, so the test does not depend on what the real calendar says today."""
    layers = f"""\
      - name: 平日当番
        rotation: {{type: weekly, start: 2026-01-05T09:00, members: [tanaka]}}
        holidays: JP
        on_holidays: never
      - name: 休日当番
        rotation: {{type: daily, start: 2026-01-01T00:00, members: [suzuki]}}
        holidays: JP
        extra_holidays: [{", ".join(holidays)}]
        on_holidays: only
"""
    return (
        oncall_yaml.contacts(
            oncall_yaml.contact("tanaka", "田中", PHONES["tanaka"]),
            oncall_yaml.contact("suzuki", "鈴木", PHONES["suzuki"]),
        )
        + oncall_yaml.one_schedule("primary", layers, name="Primary", timezone="Asia/Tokyo")
        + oncall_yaml.one_policy_for_every_alert(oncall_yaml.step("schedule: primary"), attempts=1)
    )


async def test_on_a_holiday_the_holiday_layer_is_rung_and_named_as_the_reason(
    nats_url: str, tmp_path: Path
) -> None:
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Tokyo")).date()
    # Tomorrow too: the test must not straddle midnight in Tokyo into a working day.
    days = [today.isoformat(), (today + timedelta(days=1)).isoformat()]
    async with (
        dialer_stack(nats_url, write_oncall(tmp_path, config(days))) as (sim, d, bus),
        httpx.AsyncClient() as http,
    ):
        await sim.scenario(PHONES["suzuki"], {"answer": "no-answer"})
        person = (await http.get(f"{d.url}/v1/oncall")).json()["schedules"][0]["on_call"]
        assert (person["id"], person["because"]) == ("suzuki", "holiday layer 休日当番")

        await bus.publish_alert(alert_event(7101, sendto=None, title="休日のディスク障害"))
        await sim.wait_calls(PHONES["suzuki"], 1, "the holiday person to be rung")
        assert await sim.calls(PHONES["tanaka"]) == []
        incident = (await http.get(f"{d.url}/v1/incidents/7101")).json()
        assert [c["contact"] for c in incident["calls"]] == ["鈴木"]
