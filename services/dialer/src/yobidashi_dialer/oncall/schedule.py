"""Who is on call at time T: a pure function of the schedule and T.

Rotations hand off at a wall-clock time in the schedule's timezone, so a 09:00 hand-off is at
09:00 on both sides of a DST change (daily and weekly rotations; a custom length is an exact
duration instead). Later layers take precedence over earlier ones where they have someone;
overrides replace the result for their window (only while ``replaces`` is on call, if given).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from yobidashi_dialer.oncall.config import Layer, Restriction, Rotation, Schedule, Weekday

_WEEKDAYS = list(Weekday)


def aware(value: datetime, tz: tzinfo) -> datetime:
    """A config datetime as UTC; without an offset it is local time in the schedule's timezone.

    UTC because Python compares and subtracts two datetimes that share a tzinfo object by wall
    clock, which is off by the DST change in between.
    """
    local = value if value.tzinfo is not None else value.replace(tzinfo=tz)
    return local.astimezone(UTC)


def rotation_member(rotation: Rotation, at: datetime, tz: tzinfo) -> str | None:
    at = at.astimezone(UTC)
    start = aware(rotation.start, tz)
    if at < start:
        return None
    if rotation.type == "custom":
        assert rotation.length is not None
        turn = (at - start) // rotation.length
    else:
        # Wall-clock arithmetic: hand-offs stay at the same local time across DST changes.
        local = at.astimezone(tz).replace(tzinfo=None)
        first = start.astimezone(tz).replace(tzinfo=None)
        turn = (local - first) // timedelta(days=1 if rotation.type == "daily" else 7)
    return rotation.members[turn % len(rotation.members)]


def _in_window(window: Restriction, local: datetime) -> bool:
    day = _WEEKDAYS[local.weekday()]
    previous = _WEEKDAYS[(local.weekday() - 1) % 7]
    now = local.time()
    if window.start == window.end:
        return day in window.days
    if window.start < window.end:
        return day in window.days and window.start <= now < window.end
    # wraps past midnight: the part after midnight belongs to the day it started on
    return (day in window.days and now >= window.start) or (
        previous in window.days and now < window.end
    )


def layer_applies(layer: Layer, at: datetime, tz: tzinfo) -> bool:
    if not layer.restrict:
        return True
    local = at.astimezone(tz)
    return any(_in_window(window, local) for window in layer.restrict)


def on_call(schedule: Schedule, at: datetime) -> str | None:
    """The contact id on call at ``at`` (an aware datetime), or None."""
    tz = ZoneInfo(schedule.timezone)
    at = at.astimezone(UTC)
    person = None
    for layer in schedule.layers:
        if layer_applies(layer, at, tz):
            person = rotation_member(layer.rotation, at, tz) or person
    for override in schedule.overrides:
        if aware(override.start, tz) <= at < aware(override.end, tz) and (
            override.replaces is None or override.replaces == person
        ):
            person = override.contact
    return person


def next_change(
    schedule: Schedule, at: datetime, horizon: timedelta = timedelta(days=14)
) -> datetime | None:
    """When the person on call next changes (to the minute), within ``horizon``."""
    current = on_call(schedule, at)
    step = timedelta(minutes=1)
    t = at.replace(second=0, microsecond=0) + step
    end = at + horizon
    while t < end:
        if on_call(schedule, t) != current:
            return t
        t += step
    return None
