"""Overrides added at runtime ("Sato covers Tanaka tonight"), without editing the YAML.

The pure part: what a request means (times in the schedule's timezone), whether it is
acceptable against the on-call config and the overrides already there, and the config with
them folded in. Storage and the API are in `yobidashi_dialer.overrides`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from yobidashi_dialer.oncall.config import Contact, Id, OnCallConfig, Override, Schedule

# Numbers a person answers. Premium-rate, toll-free, shared-cost, pagers and voicemail
# access numbers are valid numbers, but nobody acknowledges a problem from them.
_ANSWERABLE = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
}

LONGEST = timedelta(days=90)


class OverrideRequest(BaseModel):
    """What `yobidashi override add` and ``POST /v1/overrides`` send.

    ``from``/``until`` without a UTC offset are wall-clock times in the schedule's timezone,
    like the YAML's (an ambiguous time in the repeated DST hour means its first occurrence).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schedule: Id
    contact: Id
    from_: datetime = Field(alias="from", description="Start (ISO 8601).")
    until: datetime = Field(description="End (ISO 8601), exclusive.")
    replacing: Id | None = Field(None, description="Only while this person is on call.")
    by: str | None = Field(None, min_length=1, max_length=64, description="Who arranged it.")
    note: str | None = Field(None, min_length=1, max_length=200, description="Why.")


class RuntimeOverride(BaseModel):
    """An override as stored: times in UTC, with who added it and when."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    schedule: str
    contact: str
    start: AwareDatetime
    end: AwareDatetime
    replaces: str | None = None
    by: str | None = None
    note: str | None = None
    created_at: AwareDatetime

    def as_config(self) -> Override:
        return Override(
            contact=self.contact,
            start=self.start,
            end=self.end,
            replaces=self.replaces,
            id=self.id,
            by=self.by,
            note=self.note,
        )

    def view(self, tz: str) -> dict[str, object]:
        zone = ZoneInfo(tz)
        return {
            "id": self.id,
            "schedule": self.schedule,
            "contact": self.contact,
            "from": self.start.astimezone(zone).isoformat(),
            "until": self.end.astimezone(zone).isoformat(),
            "replacing": self.replaces,
            "by": self.by,
            "note": self.note,
            "created_at": self.created_at.isoformat(),
        }


class ScheduleOverrides(BaseModel):
    """One KV value per schedule: a new override and the ones it must not overlap are checked
    and written together, with compare-and-set, so two writers cannot both win."""

    model_config = ConfigDict(extra="ignore")

    overrides: list[RuntimeOverride] = Field(default_factory=list)


class Rejected(Exception):
    """An override that cannot be added; ``field`` names the part of the request at fault."""

    def __init__(self, field: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.conflict = conflict  # it overlaps another: 409 rather than 422


def local_time(value: datetime, tz: str, field: str) -> datetime:
    """``value`` in UTC; without an offset it is wall-clock time in ``tz``.

    A wall-clock time that does not exist (skipped by a DST change) is refused rather than
    silently moved by an hour."""
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    zone = ZoneInfo(tz)
    utc = value.replace(tzinfo=zone).astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != value:
        raise Rejected(field, f"{value.isoformat()} does not exist in {tz} (a DST change)")
    return utc


def usable_number(contact: Contact) -> str | None:
    """The first of the contact's numbers a person can answer, or None."""
    for number in contact.phones:
        parsed = phonenumbers.parse(number, None)
        if phonenumbers.number_type(parsed) in _ANSWERABLE:
            return number
    return None


def _overlaps(a_start: datetime, a_end: datetime, b: Override, tz: str) -> bool:
    b_start = local_time(b.start, tz, "from")
    b_end = local_time(b.end, tz, "until")
    return a_start < b_end and b_start < a_end


def _same_slot(a: str | None, b: str | None) -> bool:
    # An override for whoever is on call covers every slot, so it collides with any other.
    return a is None or b is None or a == b


def accept(
    config: OnCallConfig,
    current: Sequence[RuntimeOverride],
    request: OverrideRequest,
    *,
    now: datetime,
    new_id: str,
) -> RuntimeOverride:
    """The override ``request`` asks for, or `Rejected` naming the field at fault."""
    schedule = config.schedule(request.schedule)
    if schedule is None:
        raise Rejected("schedule", f"unknown schedule {request.schedule!r}")
    contact = config.contact(request.contact)
    if contact is None:
        raise Rejected("contact", f"unknown contact {request.contact!r}")
    if usable_number(contact) is None:
        raise Rejected("contact", f"{contact.id!r} has no number a person can answer")
    if request.replacing is not None and config.contact(request.replacing) is None:
        raise Rejected("replacing", f"unknown contact {request.replacing!r}")
    if request.replacing == request.contact:
        raise Rejected("replacing", "a person cannot replace themselves")
    start = local_time(request.from_, schedule.timezone, "from")
    end = local_time(request.until, schedule.timezone, "until")
    if end <= start:
        raise Rejected("until", "must be after from")
    if end <= now:
        raise Rejected("until", "is in the past")
    if end - start > LONGEST:
        raise Rejected("until", f"an override lasts at most {LONGEST.days} days; edit the YAML")
    others: Iterable[Override] = [
        *schedule.overrides,
        *(o.as_config() for o in current if o.end > now),
    ]
    for other in others:
        if _same_slot(request.replacing, other.replaces) and _overlaps(
            start, end, other, schedule.timezone
        ):
            which = f"override {other.id}" if other.id else "an override in the YAML"
            raise Rejected(
                "from",
                f"overlaps {which} ({other.contact}, {other.start.isoformat()} to "
                f"{other.end.isoformat()}); remove it first",
                conflict=True,
            )
    return RuntimeOverride(
        id=new_id,
        schedule=schedule.id,
        contact=contact.id,
        start=start,
        end=end,
        replaces=request.replacing,
        by=request.by,
        note=request.note,
        created_at=now,
    )


def with_overrides(config: OnCallConfig, overrides: Iterable[RuntimeOverride]) -> OnCallConfig:
    """The config with the runtime overrides after the YAML's own (so they take precedence)."""
    by_schedule: dict[str, list[Override]] = {}
    for each in overrides:
        by_schedule.setdefault(each.schedule, []).append(each.as_config())
    if not by_schedule:
        return config
    schedules: list[Schedule] = [
        s.model_copy(update={"overrides": [*s.overrides, *by_schedule[s.id]]})
        if s.id in by_schedule
        else s
        for s in config.schedules
    ]
    return config.model_copy(update={"schedules": schedules})


def current(overrides: Iterable[RuntimeOverride], now: datetime) -> list[RuntimeOverride]:
    """The ones not over yet, soonest first: an ended override is gone by itself."""
    return sorted((o for o in overrides if o.end > now), key=lambda o: (o.start, o.id))
