"""What the dialer knows, for people: who is on call, and what happened to a problem.

These routes are for the inside of the network (operators, the CLI, the web phone); the Ingress
exposes only the Twilio callbacks. Phone numbers appear masked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from yobidashi_common.phone import mask
from yobidashi_dialer.core.engine import Engine
from yobidashi_dialer.core.model import Incident
from yobidashi_dialer.oncall import OnCallConfig
from yobidashi_dialer.oncall.schedule import next_change, who_is_on_call


def oncall_view(config: OnCallConfig, at: datetime) -> dict[str, Any]:
    schedules = []
    for schedule in config.schedules:
        found = who_is_on_call(schedule, at)
        contact = config.contact(found.contact) if found else None
        change = next_change(schedule, at)
        schedules.append(
            {
                "id": schedule.id,
                "name": schedule.name or schedule.id,
                "timezone": schedule.timezone,
                "on_call": (
                    {
                        "id": contact.id,
                        "name": contact.name,
                        "phone": mask(contact.phones[0]),
                        "because": found.because(schedule),
                    }
                    if contact and found
                    else None
                ),
                "until": change.isoformat() if change else None,
            }
        )
    return {"at": at.isoformat(), "schedules": schedules}


def incident_view(incident: Incident) -> dict[str, Any]:
    escalation = incident.escalation
    return {
        "problem": incident.problem.model_dump(),
        "status": incident.status.value,
        "severity": incident.severity.value,
        "host": incident.host,
        "title": incident.title,
        "started_at": incident.started_at,
        "acknowledged_by": incident.acked_by,
        "acknowledged_via": incident.acked_via,
        "acknowledged_at": incident.acked_at,
        # Commands decided but not yet carried out (a call to place, a timer to set): 0 once
        # everything the last event asked for was done.
        "pending_commands": len(incident.outbox),
        "escalation": (
            {
                "route": escalation.route,
                "policy": escalation.policy.id,
                "round": escalation.round + 1,
                "step": escalation.step + 1,
                "exhausted": escalation.exhausted,
            }
            if escalation
            else None
        ),
        "calls": [
            {
                "page": page.id,
                "step": page.step + 1,
                "round": page.round + 1,
                "contact": page.contact.name or page.contact.masked_number,
                "phone": page.contact.masked_number,
                "attempt": page.attempt,
                "status": page.status.value,
                "outcome": page.outcome,
                "call_sid": page.call_sid,
                "account": page.account,
            }
            for page in incident.pages
        ],
        "timeline": [entry.model_dump(mode="json") for entry in incident.timeline],
    }


def router(engine: Engine, config: Callable[[], OnCallConfig]) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["visibility"])

    @routes.get("/oncall", summary="Who is on call per schedule, now or at a given time")
    async def get_oncall(
        at: datetime | None = Query(None, description="ISO 8601; default now"),  # noqa: B008
    ) -> dict[str, Any]:
        when = at or datetime.now(UTC)
        if when.tzinfo is None:
            raise HTTPException(422, "give `at` with a UTC offset, e.g. 2026-11-24T09:00+09:00")
        return oncall_view(config(), when)

    @routes.get("/incidents", summary="The problems that changed last, newest first")
    async def list_incidents(limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
        return {"incidents": [incident_view(i) for i in await engine.recent(limit)]}

    @routes.get("/incidents/{problem_key}", summary="A problem's escalation timeline")
    async def get_incident(problem_key: str) -> dict[str, Any]:
        key = problem_key if ":" in problem_key else f"zabbix:{problem_key}"
        incident = await engine.load(key)
        if incident is None:
            raise HTTPException(404, f"no incident for {key}")
        return incident_view(incident)

    return routes
