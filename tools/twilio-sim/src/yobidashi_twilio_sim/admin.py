"""Simulator-only endpoints: journal, scenarios, keypresses, faults, settings, health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response

from yobidashi_twilio_sim.calls import Call
from yobidashi_twilio_sim.engine import CallEngine
from yobidashi_twilio_sim.journal import Journal
from yobidashi_twilio_sim.models import (
    DigitsRequest,
    Faults,
    InboundRequest,
    RuntimeSettings,
    Scenario,
    SettingsPatch,
)
from yobidashi_twilio_sim.rest import FaultInjector
from yobidashi_twilio_sim.scenarios import ScenarioBook


def phone_view(call: Call) -> dict[str, Any]:
    """What a phone's screen would show: who is calling, what was said, is it listening."""
    return {
        "sid": call.sid,
        "from": call.options.from_,
        "status": call.status,
        "activity": call.activity,
        "listening": call.control.gather_inbox is not None,
        "spoken": [
            {"text": item.get("text", item.get("url")), "language": item.get("language")}
            for item in call.spoken
        ],
        "digits": "".join(item["keys"] for item in call.digits),
    }


def build_admin_router(
    engine: CallEngine, journal: Journal, scenarios: ScenarioBook, faults: FaultInjector
) -> APIRouter:
    router = APIRouter()

    def call_or_404(sid: str) -> Call:
        call = journal.get(sid)
        if call is None:
            raise HTTPException(404, f"no call {sid}")
        return call

    def press(call: Call, digits: str) -> dict[str, Any]:
        if call.is_ended():
            raise HTTPException(409, f"call {call.sid} is {call.status}")
        delivered = engine.press(call, digits, "external")
        return {
            "sid": call.sid,
            "digits": digits,
            "delivered": "gather" if delivered else "buffered",
        }

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "queued": engine.queued_calls, "live": engine.live_calls}

    @router.get("/sim/calls")
    async def list_calls(
        to: str | None = None,
        status: str | None = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
    ) -> dict[str, Any]:
        return {
            "calls": [
                call.journal()
                for call in journal.calls.values()
                if (to is None or call.options.to == to)
                and (from_ is None or call.options.from_ == from_)
                and (status is None or call.status == status)
            ]
        }

    @router.get("/sim/calls/{sid}")
    async def get_call(sid: str) -> dict[str, Any]:
        return call_or_404(sid).journal()

    @router.post("/sim/calls/{sid}/digits")
    async def call_digits(sid: str, body: DigitsRequest) -> dict[str, Any]:
        return press(call_or_404(sid), body.digits)

    @router.post("/sim/inbound", status_code=201)
    async def inbound(body: InboundRequest) -> dict[str, Any]:
        call = engine.inbound_call(
            engine.settings.account_sid, body.from_, body.to, body.url, body.method
        )
        return call.journal()

    @router.get("/sim/creates")
    async def list_creates() -> dict[str, Any]:
        return {"creates": journal.creates_view()}

    @router.get("/sim/requests")
    async def list_requests() -> dict[str, Any]:
        return {"requests": [vars(r) for r in journal.requests]}

    @router.delete("/sim/journal", status_code=204)
    async def reset_journal() -> Response:
        await engine.reset()
        return Response(status_code=204)

    @router.get("/sim/phones")
    async def list_phones() -> dict[str, Any]:
        numbers = dict.fromkeys([*scenarios.numbers(), *journal.numbers()])
        phones = []
        for number in numbers:
            call = journal.live_call_for(number)
            phones.append({"number": number, "call": phone_view(call) if call else None})
        return {"phones": phones}

    @router.post("/sim/phones/{number}/digits")
    async def phone_digits(number: str, body: DigitsRequest) -> dict[str, Any]:
        call = journal.live_call_for(number)
        if call is None:
            raise HTTPException(404, f"no live call to {number}")
        return press(call, body.digits)

    @router.get("/sim/scenarios")
    async def get_scenarios() -> dict[str, Any]:
        return scenarios.snapshot()

    @router.put("/sim/scenarios/{number}")
    async def put_scenario(
        number: str, spec: Annotated[Scenario | list[Scenario], Body()]
    ) -> dict[str, Any]:
        if isinstance(spec, list) and not spec:
            raise HTTPException(422, "a scenario list must not be empty")
        scenarios.set(number, spec)
        return scenarios.snapshot()

    @router.delete("/sim/scenarios/{number}", status_code=204)
    async def delete_scenario(number: str) -> Response:
        scenarios.remove(number)
        return Response(status_code=204)

    @router.delete("/sim/scenarios", status_code=204)
    async def restore_scenarios() -> Response:
        scenarios.restore()
        return Response(status_code=204)

    @router.get("/sim/faults")
    async def get_faults() -> Faults:
        return faults.faults

    @router.put("/sim/faults")
    async def put_faults(body: Faults) -> Faults:
        faults.configure(body)
        return faults.faults

    @router.get("/sim/settings")
    async def get_settings() -> RuntimeSettings:
        return engine.runtime

    @router.put("/sim/settings")
    async def put_settings(body: SettingsPatch) -> RuntimeSettings:
        return engine.apply_settings(**body.model_dump(exclude_none=True))

    return router
