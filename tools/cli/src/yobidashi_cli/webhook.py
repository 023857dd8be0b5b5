"""What our Zabbix media type posts to ingest, built here once.

``send-test-alert``, the heartbeat canary and the tests all post these bodies, so a change to
the media type's parameters is made in one place. Every value is a string or null, as the
media type sends it (Zabbix 6.0 to 8.0).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

SEVERITY_NAMES = ["Not classified", "Information", "Warning", "Average", "High", "Disaster"]


def problem_notification(
    event_id: int | str,
    *,
    at: datetime,
    sendto: str | None,
    name: str,
    host: str,
    severity: int = 4,
    tags: list[dict[str, str]] | None = None,
    trigger_id: str = "0",
    host_groups: str = "Yobidashi test",
    step_history: str | None = None,
) -> dict[str, Any]:
    """A problem notification, as ``{ALERT.SENDTO}``'s media receives it at ``at``."""
    date, clock = f"{at:%Y.%m.%d}", f"{at:%H:%M:%S}"
    return {
        "event_source": "0",
        "event_id": str(event_id),
        "event_value": "1",
        "event_update_status": "0",
        "event_status": "PROBLEM",
        "event_name": name,
        "event_date": date,
        "event_time": clock,
        "event_severity": SEVERITY_NAMES[severity],
        "event_nseverity": str(severity),
        "event_ack_status": "No",
        "event_opdata": None,
        "event_tags": tags or [],
        "trigger_id": trigger_id,
        "trigger_name": name,
        "host": host,
        "host_name": host,
        "host_groups": host_groups,
        "recovery_event_id": None,
        "update_action": None,
        "update_message": None,
        "update_user": None,
        "sendto": sendto,
        "subject": f"Problem: {name}",
        "message": f"Problem started at {clock} on {date}\nHost: {host}\nSeverity: "
        f"{SEVERITY_NAMES[severity]}",
        "esc_history": step_history or f"Problem started: {date} {clock} Age: 0m",
        "media_type_version": "1",
    }


def recovery_notification(
    problem: dict[str, Any], *, recovery_event_id: int | str, at: datetime
) -> dict[str, Any]:
    """The recovery of ``problem`` (a body from `problem_notification`)."""
    return {
        **problem,
        "event_value": "0",
        "event_status": "RESOLVED",
        "recovery_event_id": str(recovery_event_id),
        "recovery_date": f"{at:%Y.%m.%d}",
        "recovery_time": f"{at:%H:%M:%S}",
    }
