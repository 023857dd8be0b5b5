"""Who is on call at time T: a pure function of the schedule and T.

Rotations hand off at a wall-clock time in the schedule's timezone, so a 09:00 hand-off is at
09:00 on both sides of a DST change (daily and weekly rotations; a custom length is an exact
duration instead). Later layers take precedence over earlier ones where they have someone;
overrides replace the result for their window (only while ``replaces`` is on call, if given).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

import holidays

from yobidashi_dialer.oncall.config import (
    Layer,
    Override,
    Restriction,
    Rotation,
    Schedule,
    Weekday,
)

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


@cache
def _public_holidays(country: str) -> holidays.HolidayBase:
    # Fills in each year the first time a date in it is asked about.
    return holidays.country_holidays(country)


def is_holiday(layer: Layer, day: date) -> bool:
    """A public holiday of the layer's country (substitute holidays included), or one of its
    extra days. The day is the schedule's local date: a holiday runs from 00:00 to 24:00."""
    if day in layer.extra_holidays:
        return True
    return layer.holidays is not None and day in _public_holidays(layer.holidays)


def layer_applies(layer: Layer, at: datetime, tz: tzinfo) -> bool:
    local = at.astimezone(tz)
    if layer.on_holidays is not None and (
        is_holiday(layer, local.date()) != (layer.on_holidays == "only")
    ):
        return False
    if not layer.restrict:
        return True
    return any(_in_window(window, local) for window in layer.restrict)


@dataclass(frozen=True)
class OnCall:
    """Who is on call, and why: which layer's rotation (a holiday layer on a holiday), or an
    override."""

    contact: str
    layer: int | None = None  # index in the schedule's layers; None for an override
    holiday: bool = False  # the layer applies because today is a holiday (on_holidays: only)
    override: bool = False
    source: Override | None = None  # the override that put them there

    def because(self, schedule: Schedule) -> str:
        if self.override:
            return override_reason(self.source)
        assert self.layer is not None
        name = schedule.layers[self.layer].name or f"layer {self.layer + 1}"
        return f"holiday layer {name}" if self.holiday else f"rotation {name}"


def override_reason(override: Override | None) -> str:
    """ "override by 鈴木 (replacing tanaka: 発熱)": whose arrangement, for whom, and why."""
    if override is None:
        return "override"
    text = f"override by {override.by}" if override.by else "override"
    if override.replaces:
        text += f" replacing {override.replaces}"
    return f"{text}: {override.note}" if override.note else text


def who_is_on_call(schedule: Schedule, at: datetime) -> OnCall | None:
    """Who is on call at ``at`` (an aware datetime), with the reason, or None."""
    tz = ZoneInfo(schedule.timezone)
    at = at.astimezone(UTC)
    found: OnCall | None = None
    for index, layer in enumerate(schedule.layers):
        if layer_applies(layer, at, tz):
            member = rotation_member(layer.rotation, at, tz)
            if member is not None:
                found = OnCall(member, index, holiday=layer.on_holidays == "only")
    for override in schedule.overrides:
        person = found.contact if found else None
        if aware(override.start, tz) <= at < aware(override.end, tz) and (
            override.replaces is None or override.replaces == person
        ):
            found = OnCall(override.contact, override=True, source=override)
    return found


def on_call(schedule: Schedule, at: datetime) -> str | None:
    """The contact id on call at ``at`` (an aware datetime), or None."""
    found = who_is_on_call(schedule, at)
    return found.contact if found else None


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
