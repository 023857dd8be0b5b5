"""Realistic bodies of our Zabbix media type, as Zabbix 6.0 sends them (all values strings).

The shapes follow what a real Zabbix 6.0.14 posted (../shared/notes/zabbix.md, "As received").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from yobidashi_cli.webhook import problem_notification

AT = datetime(2026, 11, 24, 18, 49, 47)  # Zabbix renders dates in the media user's zone


def problem(
    event_id: int | str = 17,
    *,
    severity: int = 4,
    sendto: str | None = "090-1234-5678",
    host: str = "web01",
    name: str = "web01: HTTP service is down",
    step_history: str = "Problem started: 2026.11.24 18:49:47 Age: 0m",
    **overrides: Any,
) -> dict[str, Any]:
    body = problem_notification(
        event_id,
        at=AT,
        sendto=sendto,
        name=name,
        host=host,
        severity=severity,
        tags=[{"tag": "service", "value": "web"}, {"tag": "env", "value": "prod"}],
        trigger_id="23133",
        host_groups="Linux servers, Web",
        step_history=step_history,
    )
    return {**body, **overrides}


def recovery(event_id: int | str = 17, recovery_id: int | str = 18, **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_value": "0",
        "event_status": "RESOLVED",
        "recovery_event_id": str(recovery_id),
        "recovery_date": "2026.11.24",
        "recovery_time": "18:55:01",
    }
    return problem(event_id, **{**fields, **kw})


def update(
    event_id: int | str = 17,
    *,
    action: str = "acknowledged",
    user: str = "Taro Yamada (yamada)",
    message: str | None = "looking into it",
    **kw: Any,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_update_status": "1",
        "event_ack_status": "Yes" if action.startswith("acknowledged") else "No",
        "update_action": action,
        "update_user": user,
        "update_message": message,
        "update_date": "2026.11.24",
        "update_time": "18:50:12",
    }
    return problem(event_id, **{**fields, **kw})
