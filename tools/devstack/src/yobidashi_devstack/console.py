"""The devstack's console: the web phone page and the little API behind it.

The page polls ``/api/state``: every contact's phone with its newest call at the simulator,
who is on call, and the dialer's latest problems with their timelines. Keys typed on a phone's
keypad go to the simulator's live call; "Send test alert" posts a realistic Zabbix payload to
ingest (or, with a real Zabbix, fires the test trigger so Zabbix itself sends it).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from yobidashi_cli.main import test_alert
from yobidashi_common.events import FINAL_CALL_STATUSES
from yobidashi_zabbix_standin import StandInApp, ZabbixStandIn

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Phone:
    number: str
    name: str
    contact: str | None = None  # its contact's id in the on-call config; None: Zabbix's only


@dataclass
class Backends:
    ingest: str
    dialer: str
    sim: str
    ingest_token: str
    phones: list[Phone]
    # With a real Zabbix: fires the test trigger and returns what happened, in words.
    fire_zabbix_problem: Callable[[], Awaitable[str]] | None = None
    standin: ZabbixStandIn | None = None
    twilio_number: str = ""  # our number: the web phones call it back


class TestAlert(BaseModel):
    severity: int = Field(4, ge=0, le=5)
    host: str = "web01"
    name: str = "HTTP サービスが応答しません"
    sendto: str | None = Field(None, description="One of the web phone's numbers, as Zabbix would.")


class Keys(BaseModel):
    digits: str = Field(pattern=r"^[0-9*#w]{1,20}$")


def phone_call(journal: dict[str, Any], listening: set[str]) -> dict[str, Any]:
    return {
        "sid": journal["sid"],
        "status": journal["status"],
        "activity": journal["activity"],
        "live": journal["status"] not in FINAL_CALL_STATUSES,
        "listening": journal["sid"] in listening,  # inside a <Gather>: keys count now
        "spoken": [item.get("text", "") for item in journal["spoken"]],
        "digits": "".join(item["keys"] for item in journal["digits"]),
        "created": journal["times"]["created"],
    }


def create_console(backends: Backends) -> FastAPI:
    http = httpx.AsyncClient(timeout=5)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await http.aclose()

    app = FastAPI(
        title="Yobidashi devstack console", docs_url=None, redoc_url=None, lifespan=lifespan
    )

    async def newest_calls() -> list[dict[str, Any] | None]:
        live = (await http.get(f"{backends.sim}/sim/phones")).json()["phones"]
        listening = {p["call"]["sid"] for p in live if p["call"] and p["call"]["listening"]}

        async def newest(number: str) -> dict[str, Any] | None:
            found = await http.get(f"{backends.sim}/sim/calls", params={"to": number})
            # A call this phone made to us (a call-back) is its call too.
            made = await http.get(f"{backends.sim}/sim/calls", params={"from": number})
            calls = found.json()["calls"] + [
                c for c in made.json()["calls"] if c["direction"] == "inbound"
            ]
            if not calls:
                return None
            return phone_call(max(calls, key=lambda c: c["times"]["created"]), listening)

        return list(await asyncio.gather(*(newest(p.number) for p in backends.phones)))

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/phone")

    @app.get("/phone", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "phone.html", media_type="text/html; charset=utf-8")

    async def from_dialer(path: str, errors: list[str], **params: Any) -> Any:
        try:
            response = await http.get(f"{backends.dialer}{path}", params=params)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as exc:
            errors.append(f"dialer {path}: {exc!r}")
            return None

    @app.get("/api/state")
    async def state() -> dict[str, Any]:
        errors: list[str] = []
        calls, incidents, oncall = await asyncio.gather(
            newest_calls(),
            from_dialer("/v1/incidents", errors, limit=8),
            from_dialer("/v1/oncall", errors),
        )
        schedules = oncall["schedules"] if oncall else []
        # By contact id: two people may share a name.
        on_call = {s["on_call"]["id"] for s in schedules if s["on_call"] is not None}
        return {
            "zabbix": "real" if backends.fire_zabbix_problem else "stand-in",
            "phones": [
                {
                    "number": p.number,
                    "name": p.name,
                    "on_call": p.contact is not None and p.contact in on_call,
                    "call": c,
                }
                for p, c in zip(backends.phones, calls, strict=True)
            ],
            "incidents": incidents["incidents"] if incidents else [],
            "zabbix_acks": backends.standin.recent_acks(10) if backends.standin else [],
            "errors": errors,
        }

    @app.post("/api/phones/{number}/digits")
    async def press(number: str, keys: Keys) -> dict[str, Any]:
        response = await http.post(
            f"{backends.sim}/sim/phones/{number}/digits", json={"digits": keys.digits}
        )
        if response.status_code != 200:
            raise HTTPException(response.status_code, response.json().get("detail"))
        result: dict[str, Any] = response.json()
        return result

    @app.post("/api/phones/{number}/call-back")
    async def call_back(number: str) -> dict[str, Any]:
        """The phone calls our Twilio number, whose Voice URL is the dialer's."""
        if number not in {p.number for p in backends.phones}:
            raise HTTPException(404, f"no web phone {number}")
        response = await http.post(
            f"{backends.sim}/sim/inbound",
            json={
                "from": number,
                "to": backends.twilio_number,
                "url": f"{backends.dialer}/twilio/voice/incoming",
            },
        )
        if response.status_code != 201:
            raise HTTPException(502, f"the simulator answered {response.status_code}")
        return {"sid": response.json()["sid"]}

    @app.post("/api/test-alert")
    async def send_test_alert(alert: TestAlert) -> dict[str, Any]:
        numbers = [p.number for p in backends.phones]
        if alert.sendto is not None and alert.sendto not in numbers:
            raise HTTPException(422, f"sendto must be one of the web phone's numbers: {numbers}")
        if backends.fire_zabbix_problem is not None:
            return {"sent_to": "zabbix", "detail": await backends.fire_zabbix_problem()}
        event_id = 900_000_000 + secrets.randbelow(99_999_999)
        # As Zabbix would: to one user's media (the first one's unless a phone was picked).
        # Where a route matches, the on-call config decides who is rung anyway.
        sendto = alert.sendto or (numbers[0] if numbers else "")
        body = test_alert(event_id, sendto, alert.severity, alert.host, alert.name)
        response = await http.post(
            f"{backends.ingest}/v1/zabbix",
            json=body,
            headers={"Authorization": f"Bearer {backends.ingest_token}"},
        )
        if response.status_code != 202:
            raise HTTPException(502, f"ingest answered {response.status_code}: {response.text}")
        return {"sent_to": "ingest", "event_id": str(event_id), "ingest": response.json()}

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok")

    if backends.standin is not None:
        app.mount("/zabbix", StandInApp(backends.standin))

    return app
