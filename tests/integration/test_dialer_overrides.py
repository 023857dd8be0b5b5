"""Runtime overrides in running dialers: the API, the CLI, two replicas, a running escalation."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from yobidashi_testing import oncall_yaml
from yobidashi_testing.commands import run_cli
from yobidashi_testing.dialer_stack import ADMIN_AUTH, ADMIN_TOKEN, dialer_stack, write_oncall
from yobidashi_testing.stack import (
    Bus,
    SimAccount,
    alert_event,
    dialer_in_process,
    dialer_process,
    eventually,
    simulator,
)

pytestmark = pytest.mark.integration

PHONES = {"boss": "+819044440009", "tanaka": "+819044440001", "sato": "+819044440002"}
CONFIG = (
    oncall_yaml.contacts(
        oncall_yaml.contact("boss", "部長", PHONES["boss"]),
        oncall_yaml.TANAKA_CONTACT,
        oncall_yaml.SATO_CONTACT,
    )
    + oncall_yaml.one_schedule(
        "primary", oncall_yaml.weekly_layer("tanaka"), name="Primary", timezone="Asia/Tokyo"
    )
    + oncall_yaml.one_policy_for_every_alert(
        oncall_yaml.step("contact: boss"), oncall_yaml.step("schedule: primary"), attempts=1
    )
)


def tokyo(delta: timedelta) -> str:
    """A wall-clock time in Tokyo, without an offset (as a person types it)."""
    local = (datetime.now(UTC) + delta).astimezone(ZoneInfo("Asia/Tokyo"))
    return local.replace(tzinfo=None, microsecond=0).isoformat()


def override(**fields: Any) -> dict[str, Any]:
    body = {
        "schedule": "primary",
        "contact": "sato",
        "from": tokyo(-timedelta(hours=1)),
        "until": tokyo(timedelta(hours=8)),
        "replacing": "tanaka",
        "by": "鈴木",
        "note": "田中さん発熱",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


async def on_call(url: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient() as http:
        view = (await http.get(f"{url}/v1/oncall")).json()
    person: dict[str, Any] | None = view["schedules"][0]["on_call"]
    return person


async def test_an_override_made_on_one_replica_rings_sato_in_the_next_step_on_the_other(
    nats_url: str, tmp_path: Path
) -> None:
    env = {
        "YOBIDASHI_CONFIG": str(write_oncall(tmp_path, CONFIG)),
        "YOBIDASHI_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    # Real time in the simulator: the boss's call waits for a key while we change the roster.
    async with (
        simulator(time_scale=1.0) as sim,
        dialer_in_process(nats_url, sim, env, DIAL_GATHER_TIMEOUT="30", DIAL_MENU_REPEATS="5") as a,
        dialer_in_process(nats_url, sim, env) as b,
        Bus(nats_url) as bus,
        httpx.AsyncClient() as http,
    ):
        await sim.scenario(PHONES["boss"], {"answer": "human", "answer_after": 1})
        await sim.scenario(PHONES["sato"], {"answer": "no-answer"})
        await bus.publish_alert(alert_event(7001, sendto=None, title="DB 応答なし"))
        [boss_call] = await sim.wait_calls(PHONES["boss"], 1, "step 1 rings the boss")
        await sim.wait_status(boss_call["sid"], "in-progress")

        # Tanaka is sick: the change goes in through replica A while the boss's phone rings.
        made = await http.post(f"{a.url}/v1/overrides", json=override(), headers=ADMIN_AUTH)
        assert made.status_code == 201, made.text
        ovr = made.json()
        assert ovr["from"].endswith("+09:00")
        # Replica B sees it without a restart or a YAML edit.
        person = await eventually(
            lambda: _if_sato(b.url), "replica B to see the override in /v1/oncall"
        )
        assert person["because"] == "override by 鈴木 replacing tanaka: 田中さん発熱"
        assert person["phone"] == "+81 90-****-0002"

        await sim.press(PHONES["boss"], "2")  # the boss passes: step 2 asks the schedule
        await sim.wait_calls(PHONES["sato"], 1, "step 2 rings sato, the override")
        assert await sim.calls(PHONES["tanaka"]) == []
        incident = (await http.get(f"{b.url}/v1/incidents/7001")).json()
        notes = {e["what"]: e["detail"] for e in incident["timeline"]}
        assert notes["on call by override"] == (
            "primary: sato, override by 鈴木 replacing tanaka: 田中さん発熱"
        )
        assert [c["contact"] for c in incident["calls"]] == ["部長", "佐藤"]

        # Removed through B: A's next decision is back to the rotation.
        gone = await http.delete(f"{b.url}/v1/overrides/{ovr['id']}", headers=ADMIN_AUTH)
        assert gone.status_code == 200, gone.text
        await eventually(lambda: _if_name(a.url, "田中"), "replica A to drop the override")
        listed = (await http.get(f"{a.url}/v1/overrides")).json()
        assert listed == {"overrides": []}


async def _if_sato(url: str) -> dict[str, Any] | None:
    person = await on_call(url)
    return person if person and person["id"] == "sato" else None


async def _if_name(url: str, name: str) -> bool:
    person = await on_call(url)
    return bool(person and person["name"] == name)


async def test_bad_overrides_are_refused_naming_the_field_and_nothing_is_stored(
    nats_url: str, tmp_path: Path
) -> None:
    config = write_oncall(tmp_path, CONFIG)
    async with (
        dialer_stack(nats_url, config, YOBIDASHI_ADMIN_TOKEN=ADMIN_TOKEN) as (_, d, _bus),
        httpx.AsyncClient(base_url=d.url) as http,
    ):
        cases = [
            (override(schedule="nope"), 422, "schedule"),
            (override(contact="nobody"), 422, "contact"),
            (override(replacing="ghost"), 422, "replacing"),
            (override(until=tokyo(-timedelta(hours=2))), 422, "until"),
            (
                override(
                    **{
                        "from": tokyo(-timedelta(minutes=30)),
                        "until": tokyo(-timedelta(minutes=10)),
                    }
                ),
                422,
                "until",
            ),
            (override(until="tomorrow"), 422, "until"),
            ({**override(), "colour": "red"}, 422, "colour"),
        ]
        for body, status, field in cases:
            response = await http.post("/v1/overrides", json=body, headers=ADMIN_AUTH)
            assert response.status_code == status, (body, response.text)
            assert field in {d["field"] for d in response.json()["details"]}, response.text
        assert (await http.post("/v1/overrides", json=override())).status_code == 401
        wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}x"}
        assert (await http.post("/v1/overrides", json=override(), headers=wrong)).status_code == 401
        assert (await http.get("/v1/overrides")).json() == {"overrides": []}

        # Two writers at once for the same slot: exactly one wins, the other hears why.
        first, second = await asyncio.gather(
            http.post("/v1/overrides", json=override(), headers=ADMIN_AUTH),
            http.post("/v1/overrides", json=override(contact="boss"), headers=ADMIN_AUTH),
        )
        assert sorted([first.status_code, second.status_code]) == [201, 409]
        loser = first if first.status_code == 409 else second
        assert loser.json()["error"] == "overlap"
        assert loser.json()["details"][0]["field"] == "from"
        assert len((await http.get("/v1/overrides")).json()["overrides"]) == 1
        missing = await http.delete("/v1/overrides/ovr-nothere", headers=ADMIN_AUTH)
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"


async def test_without_an_admin_token_writes_are_off_and_reads_work(
    nats_url: str, tmp_path: Path
) -> None:
    async with (
        dialer_stack(nats_url, write_oncall(tmp_path, CONFIG)) as (_, d, _bus),
        httpx.AsyncClient(base_url=d.url) as http,
    ):
        refused = await http.post("/v1/overrides", json=override(), headers=ADMIN_AUTH)
        assert refused.status_code == 503
        assert refused.json()["error"] == "writes_disabled"
        assert "YOBIDASHI_ADMIN_TOKEN" in refused.json()["message"]
        assert (await http.get("/v1/overrides")).status_code == 200
        assert (await http.get("/v1/oncall")).status_code == 200


async def test_the_cli_adds_lists_and_removes_and_names_the_bad_field(
    nats_url: str, tmp_path: Path
) -> None:
    config = write_oncall(tmp_path, CONFIG)
    async with dialer_stack(nats_url, config, YOBIDASHI_ADMIN_TOKEN=ADMIN_TOKEN) as (_, d, _bus):
        env = {"YOBIDASHI_DIALER_URL": d.url, "YOBIDASHI_ADMIN_TOKEN": ADMIN_TOKEN}
        start, end = tokyo(-timedelta(hours=1)), tokyo(timedelta(hours=5))
        code, out = await run_cli(
            "override", "add", "--schedule", "primary", "--contact", "sato",
            "--from", start, "--until", end, "--replacing", "tanaka", "--by", "鈴木",
            "--note", "発熱", env=env,
        )  # fmt: skip
        assert code == 0, out
        assert out.startswith("added ovr-")
        ovr_id = out.split()[1]
        code, out = await run_cli(
            "override", "add", "--schedule", "primary", "--contact", "nobody",
            "--from", start, "--until", end, env=env,
        )  # fmt: skip
        assert code == 1
        assert "--contact: unknown contact 'nobody'" in out
        code, out = await run_cli("override", "list", env=env)
        assert code == 0
        assert ovr_id in out
        assert "replacing tanaka (by 鈴木) — 発熱" in out
        code, out = await run_cli("oncall", "now", env=env)
        assert "佐藤" in out
        assert "[override by 鈴木 replacing tanaka: 発熱]" in out
        code, out = await run_cli(
            "override", "remove", ovr_id, env={**env, "YOBIDASHI_ADMIN_TOKEN": ""}
        )
        assert code == 1
        assert "admin token" in out
        code, out = await run_cli("override", "remove", ovr_id, env=env)
        assert code == 0, out
        code, out = await run_cli("override", "list", env=env)
        assert out.strip() == "no overrides"


async def test_a_replica_killed_while_overrides_are_written_leaves_whole_ones_only(
    nats_url: str, tmp_path: Path
) -> None:
    """kill -9 in the middle of a stream of writes: each is one compare-and-set, so what the
    bucket holds afterwards is whole, every 201 is there, and the slots still do not overlap."""
    env = {
        "YOBIDASHI_CONFIG": str(write_oncall(tmp_path, CONFIG)),
        "YOBIDASHI_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    account = SimAccount("http://127.0.0.1:9")  # overrides never reach Twilio
    victim = dialer_process(nats_url, account, tmp_path / "victim.log", env).start()
    answered: list[str] = []
    # One-hour slots for whoever is on call, side by side: none may overlap another.
    slots = [
        override(
            replacing=None,
            **{"from": tokyo(timedelta(hours=n + 1)), "until": tokyo(timedelta(hours=n + 2))},
        )
        for n in range(200)
    ]

    async def write(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
        try:
            response = await http.post(f"{victim.url}/v1/overrides", json=body, headers=ADMIN_AUTH)
        except httpx.HTTPError:
            return  # died under us: this one may or may not have been stored
        assert response.status_code in {201, 409, 503}, response.text
        if response.status_code == 201:
            answered.append(response.json()["id"])

    try:
        async with httpx.AsyncClient(timeout=10) as http:
            writers = [asyncio.create_task(write(http, body)) for body in slots]
            await eventually(lambda: _true(len(answered) >= 20), "some writes to be answered")
            victim.kill()
            await asyncio.gather(*writers)
    finally:
        victim.stop()
    assert 20 <= len(answered) < len(slots), "the kill landed in the middle of the writes"
    survivor = dialer_process(nats_url, account, tmp_path / "survivor.log", env).start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            listed = (await http.get(f"{survivor.url}/v1/overrides")).json()["overrides"]
    finally:
        survivor.stop()
    ids = [o["id"] for o in listed]
    assert set(answered) <= set(ids)
    spans = sorted(
        (datetime.fromisoformat(o["from"]), datetime.fromisoformat(o["until"])) for o in listed
    )
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


async def _true(value: bool) -> bool:
    return value
