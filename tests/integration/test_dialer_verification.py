"""Contact verification in a running dialer, with the simulator as the phone.

The test is the person: it reads the code the call spoke (the simulator journals every word) and
keys it in, a wrong one, or nothing; or the phone is not answered at all.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from yobidashi_dialer import metrics
from yobidashi_harness.nats_server import free_port
from yobidashi_testing import oncall_yaml
from yobidashi_testing.commands import run_cli
from yobidashi_testing.dialer_stack import ADMIN_AUTH, ADMIN_TOKEN, write_oncall
from yobidashi_testing.people import SATO, TANAKA
from yobidashi_testing.stack import (
    RunningDialer,
    Sim,
    dialer_in_process,
    dialer_process,
    eventually,
    simulator,
)

pytestmark = pytest.mark.integration

ZABBIX_ONLY = "+819055550007"
CONFIG = oncall_yaml.contacts(
    oncall_yaml.TANAKA_CONTACT, oncall_yaml.contact("sato", "Sato", SATO, language="en")
) + oncall_yaml.one_schedule("primary", oncall_yaml.weekly_layer("tanaka"))


async def heard_code(sim: Sim, number: str) -> tuple[str, dict[str, Any]]:
    """Wait until the verification call to ``number`` listens; the code it read, and the call."""

    async def listening() -> dict[str, Any] | None:
        phones = (await sim.http.get("/sim/phones")).json()["phones"]
        call = next((p["call"] for p in phones if p["number"] == number), None)
        return call if call and call["listening"] and call["spoken"] else None

    call = await eventually(listening, f"the verification call to {number} to listen")
    text = call["spoken"][0]["text"]
    first = re.search(r"(\d(?:(?:、|, )\d){5})", text)
    assert first is not None, text
    code = re.sub(r"\D", "", first.group(1))
    assert text.count(first.group(1)) == 2, text  # read twice
    return code, call


async def outcome(http: httpx.AsyncClient, url: str, attempt: dict[str, Any]) -> str:
    async def done() -> str | None:
        view = (await http.get(f"{url}/v1/contacts/verify/{attempt['id']}")).json()
        return None if view["outcome"] == "calling" else str(view["outcome"])

    found: str = await eventually(done, "the verification's outcome")
    return found


@asynccontextmanager
async def verifying_dialer(nats_url: str, config: Path) -> AsyncIterator[tuple[Sim, RunningDialer]]:
    """The phone rings at a fifth of real time: slow enough to read the code before it ends."""
    async with (
        simulator(time_scale=0.2) as sim,
        dialer_in_process(
            nats_url, sim, YOBIDASHI_CONFIG=str(config), YOBIDASHI_ADMIN_TOKEN=ADMIN_TOKEN
        ) as dialer,
    ):
        yield sim, dialer


async def test_keyed_wrong_silent_and_unanswered_verifications(
    nats_url: str, tmp_path: Path
) -> None:
    async with (
        verifying_dialer(nats_url, write_oncall(tmp_path, CONFIG)) as (sim, d),
        httpx.AsyncClient() as http,
    ):

        async def start(who: str) -> dict[str, Any]:
            response = await http.post(
                f"{d.url}/v1/contacts/verify", json={"contact": who}, headers=ADMIN_AUTH
            )
            assert response.status_code == 202, response.text
            body: dict[str, Any] = response.json()
            return body

        listed = (await http.get(f"{d.url}/v1/contacts")).json()["contacts"]
        assert [c["verified"] for c in listed] == [False, False]
        assert metrics.ONCALL_UNVERIFIED._value.get() == 1  # tanaka is on call, unverified
        assert metrics.CONTACTS_UNVERIFIED._value.get() == 2

        # The right code, keyed in.
        await sim.scenario(TANAKA, {"answer": "human"})
        attempt = await start("tanaka")
        assert attempt["phone"] == "+81 90-****-0001"
        code, call = await heard_code(sim, TANAKA)
        assert "確認コードは" in call["spoken"][0]["text"]
        await sim.press(TANAKA, code)
        assert await outcome(http, d.url, attempt) == "verified"

        async def tanaka_verified() -> dict[str, Any] | None:
            # The attempt's outcome is written first, the person's state right after.
            listed = (await http.get(f"{d.url}/v1/contacts")).json()["contacts"]
            found: dict[str, Any] = next(c for c in listed if c["id"] == "tanaka")
            return found if found["verified"] else None

        tanaka = await eventually(tanaka_verified, "tanaka to be listed as verified")
        assert tanaka["verified_at"]
        assert metrics.ONCALL_UNVERIFIED._value.get() == 0
        assert metrics.CONTACTS_UNVERIFIED._value.get() == 1

        # A wrong code, in English: Sato stays unverified.
        await sim.scenario(SATO, {"answer": "human"})
        attempt = await start(SATO)  # by number: the config knows whose it is
        code, call = await heard_code(sim, SATO)
        assert "Your code is" in call["spoken"][0]["text"]
        await sim.press(SATO, str((int(code[0]) + 1) % 10) + code[1:])
        assert await outcome(http, d.url, attempt) == "wrong_code"

        # Answered, but nothing keyed; then not answered at all.
        await sim.scenario(SATO, {"answer": "human"})
        attempt = await start("sato")
        assert await outcome(http, d.url, attempt) == "no_code"
        await sim.scenario(SATO, {"answer": "no-answer"})
        attempt = await start("sato")
        assert await outcome(http, d.url, attempt) == "no_answer"

        async def sato_unanswered() -> bool:
            listed = (await http.get(f"{d.url}/v1/contacts")).json()["contacts"]
            sato = next(c for c in listed if c["id"] == "sato")
            return bool((sato["verified"], sato["last_outcome"]) == (False, "no_answer"))

        await eventually(sato_unanswered, "sato to be listed as unverified: no answer")

        # A number only Zabbix knows is verified by its number.
        await sim.scenario(ZABBIX_ONLY, {"answer": "human"})
        attempt = await start("090-5555-0007")
        assert attempt["contact"] == f"tel:{ZABBIX_ONLY}"
        code, _ = await heard_code(sim, ZABBIX_ONLY)
        await sim.press(ZABBIX_ONLY, code)
        assert await outcome(http, d.url, attempt) == "verified"

        # Refusals name the field; no token, no call.
        bad = await http.post(
            f"{d.url}/v1/contacts/verify", json={"contact": "nobody"}, headers=ADMIN_AUTH
        )
        assert bad.status_code == 422
        assert bad.json()["details"][0]["field"] == "contact"
        unauthorised = await http.post(f"{d.url}/v1/contacts/verify", json={"contact": "tanaka"})
        assert unauthorised.status_code == 401


async def test_the_cli_says_verified_or_which_failure_and_lists_the_unverified(
    nats_url: str, tmp_path: Path
) -> None:
    path = write_oncall(tmp_path, CONFIG)
    async with verifying_dialer(nats_url, path) as (sim, d):
        env = {"YOBIDASHI_DIALER_URL": d.url, "YOBIDASHI_ADMIN_TOKEN": ADMIN_TOKEN}
        await sim.scenario(TANAKA, {"answer": "human"})
        running = asyncio.create_task(run_cli("contact", "verify", "tanaka", env=env))
        code, _ = await heard_code(sim, TANAKA)
        await sim.press(TANAKA, code)
        status, out = await running
        assert status == 0, out
        assert "tanaka (+81 90-****-0001): verified" in out

        await sim.scenario(SATO, {"answer": "no-answer"})
        status, out = await run_cli("contact", "verify", "sato", env=env)
        assert status == 1
        assert "NOT verified: nobody answered" in out

        status, out = await run_cli("oncall", "now", env=env)
        assert "unverified (1): sato (+81 90-****-0002)" in out
        status, out = await run_cli("config", "check", str(path), env=env)
        assert status == 0
        assert "unverified (1): sato" in out


async def test_the_replica_that_placed_the_verification_call_is_killed_the_next_one_checks_it(
    nats_url: str, tmp_path: Path
) -> None:
    """kill -9 the dialer that placed the call while the phone listens for the code; a new one
    on the same address checks the code: the attempt (the code only as a hash) is in KV."""
    port = free_port()
    env = {
        "YOBIDASHI_CONFIG": str(write_oncall(tmp_path, CONFIG)),
        "YOBIDASHI_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    async with simulator(time_scale=1.0) as sim, httpx.AsyncClient() as http:
        first = dialer_process(nats_url, sim, tmp_path / "first.log", env, port=port)
        await asyncio.to_thread(first.start)
        try:
            await sim.scenario(TANAKA, {"answer": "human"})
            started = await http.post(
                f"{first.url}/v1/contacts/verify", json={"contact": "tanaka"}, headers=ADMIN_AUTH
            )
            assert started.status_code == 202, started.text
            attempt = started.json()
            code, _ = await heard_code(sim, TANAKA)
        finally:
            first.kill()
        assert code not in first.log_file.read_text()  # the code is never logged
        second = dialer_process(nats_url, sim, tmp_path / "second.log", env, port=port)
        await asyncio.to_thread(second.start)
        try:
            await sim.press(TANAKA, code)
            assert await outcome(http, second.url, attempt) == "verified"
        finally:
            await asyncio.to_thread(second.stop)
