"""Which escalation policy an alert goes to: the first route that matches, in file order."""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase

from yobidashi_common.events import AlertEvent
from yobidashi_dialer.oncall.config import Match, Route


def matches(match: Match, alert: AlertEvent) -> bool:
    if match.severity is not None and alert.severity.rank < match.severity.rank:
        return False
    if match.host_groups and not any(
        fnmatchcase(group, pattern) for group in alert.host_groups for pattern in match.host_groups
    ):
        return False
    if match.hosts and not any(fnmatchcase(alert.host, pattern) for pattern in match.hosts):
        return False
    for name, value in match.tags.items():
        if not any(t.tag == name and (value is None or t.value == value) for t in alert.tags):
            return False
    return match.problem is None or re.search(match.problem, alert.title) is not None


def route_for(alert: AlertEvent, routes: Sequence[Route]) -> Route | None:
    return next((route for route in routes if matches(route.match, alert)), None)
