"""The on-call data (contacts, schedules, escalation policies, routes) as validated models.

One YAML file (``YOBIDASHI_CONFIG``) holds it all; `load` turns it into an `OnCallConfig` or
raises `ConfigError` with one message per problem, each naming the line and the field.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

import holidays
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from yobidashi_common.events import Severity
from yobidashi_common.phone import E164, InvalidPhoneNumber, normalize
from yobidashi_common.settings import TimeZoneName, parse_duration

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", min_length=1, max_length=64)]


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value.strip().upper().startswith("P"):
        return value  # ISO 8601 (PT4S): how the state stored in KV writes it back
    seconds = parse_duration(value)
    return timedelta(seconds=seconds) if isinstance(seconds, int | float) else seconds


Duration = Annotated[timedelta, BeforeValidator(_duration)]


Zone = TimeZoneName


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Model):
    id: Id
    name: str = Field(min_length=1)
    region: str = Field("JP", min_length=2, max_length=2, description="For numbers without +.")
    phones: list[E164] = Field(min_length=1, description="Numbers to ring, first one first.")
    language: Literal["ja", "en"] = "ja"
    timezone: Zone = "Asia/Tokyo"
    max_calls_per_hour: int | None = Field(None, ge=1, description="Overrides the default cap.")
    pin: str | None = Field(
        None,
        pattern=r"^[0-9]{4,8}$",
        repr=False,
        description="4-8 digits a call-back must key first (DIAL_CALLBACK=pin).",
    )

    @field_validator("phones")
    @classmethod
    def _numbers(cls, phones: list[str], info: ValidationInfo) -> list[E164]:
        region = str(info.data.get("region", "JP"))
        try:
            return [normalize(raw, region) for raw in phones]
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from None


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _clock(value: Any) -> Any:
    if isinstance(value, str):
        match = _HHMM.match(value.strip())
        if not match:
            raise ValueError(f"not a time of day: {value!r} (use HH:MM, e.g. 09:00)")
        return time(int(match.group(1)), int(match.group(2)))
    return value


Clock = Annotated[time, BeforeValidator(_clock)]


class Restriction(_Model):
    """When a layer applies: on these days, between these times (may wrap past midnight)."""

    days: list[Weekday] = Field(default_factory=lambda: list(Weekday))
    start: Clock = time(0, 0)
    end: Clock = time(0, 0)  # equal to start: the whole day


class Rotation(_Model):
    """Members take turns; a turn ends at the hand-off time, in the schedule's timezone.

    ``daily`` and ``weekly`` hand-offs follow the wall clock (09:00 stays 09:00 across a DST
    change); a ``custom`` length is an exact duration.
    """

    type: Literal["daily", "weekly", "custom"]
    start: datetime = Field(description="The first hand-off (local time if no offset).")
    length: Duration | None = Field(None, description="Turn length, for custom rotations.")
    members: list[Id] = Field(min_length=1)

    @model_validator(mode="after")
    def _length(self) -> Rotation:
        if self.type == "custom" and (self.length is None or self.length <= timedelta(0)):
            raise ValueError("a custom rotation needs a positive length, e.g. 12h")
        if self.type != "custom" and self.length is not None:
            raise ValueError(f"a {self.type} rotation takes no length")
        return self


class Layer(_Model):
    name: str = ""
    rotation: Rotation
    restrict: list[Restriction] = Field(default_factory=list)
    holidays: str | None = Field(
        None, description="Country (ISO 3166 code, e.g. JP) whose public holidays count."
    )
    extra_holidays: list[date] = Field(
        default_factory=list, description="More days off for this layer (e.g. 2026-12-29)."
    )
    on_holidays: Literal["only", "never"] | None = Field(
        None, description="Apply only on holidays (休日当番), or never on them."
    )

    @field_validator("holidays")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code not in holidays.list_supported_countries():
            raise ValueError(f"no public holidays known for {value!r} (use a code like JP)")
        return code

    @model_validator(mode="after")
    def _holiday_rule(self) -> Layer:
        has_days = self.holidays is not None or bool(self.extra_holidays)
        if self.on_holidays is not None and not has_days:
            raise ValueError("on_holidays needs holidays (a country) or extra_holidays")
        if has_days and self.on_holidays is None:
            raise ValueError("holidays are given: say on_holidays: only or never")
        return self


class Override(_Model):
    """ "Sato covers Tanaka from Friday 18:00 to Monday 09:00"."""

    contact: Id
    start: datetime
    end: datetime
    replaces: Id | None = Field(
        None, description="Only while this person is on call; empty: whoever is."
    )
    # Set on overrides added at runtime (`yobidashi override add`), so that "who is on call"
    # can say whose decision it was.
    id: str | None = Field(None, description="Set by the runtime overrides; not needed here.")
    by: str | None = Field(None, max_length=64, description="Who arranged it.")
    note: str | None = Field(None, max_length=200, description="Why, for the people who look.")

    @model_validator(mode="after")
    def _order(self) -> Override:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Schedule(_Model):
    id: Id
    name: str = ""
    timezone: Zone = "Asia/Tokyo"
    layers: list[Layer] = Field(min_length=1, description="Later layers take precedence.")
    overrides: list[Override] = Field(default_factory=list)


class Target(_Model):
    contact: Id | None = None
    schedule: Id | None = None

    @model_validator(mode="after")
    def _one(self) -> Target:
        if (self.contact is None) == (self.schedule is None):
            raise ValueError("a target is either a contact or a schedule")
        return self


class Step(_Model):
    targets: list[Target] = Field(min_length=1)
    order: Literal["parallel", "sequential"] = Field(
        "parallel", description="Ring everyone at once, or one after another."
    )
    wait: Duration = Field(
        timedelta(minutes=5), description="From the step's start to the next step."
    )


class Policy(_Model):
    id: Id
    name: str = ""
    steps: list[Step] = Field(min_length=1)
    repeat: int = Field(0, ge=0, le=10, description="Times to run the whole policy again.")
    attempts: int | None = Field(None, ge=1, le=10, description="Redials per person and step.")
    fallback: Id | None = Field(None, description="Contact to ring once when nobody answered.")


class Match(_Model):
    severity: Severity | None = Field(None, description="This severity or worse.")
    host_groups: list[str] = Field(default_factory=list, description="Any of these.")
    hosts: list[str] = Field(default_factory=list, description="Any of these.")
    tags: dict[str, str | None] = Field(
        default_factory=dict, description="All of these; a null value matches any value."
    )
    problem: str | None = Field(None, description="Regular expression on the problem name.")

    @field_validator("problem")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Route(_Model):
    id: Id
    match: Match = Field(default_factory=Match, description="Empty: matches everything.")
    policy: Id
    bundle_window: Duration | None = Field(
        None, description="Bundle problems for one person within this window."
    )


class OnCallConfig(_Model):
    contacts: list[Contact] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)

    def contact(self, contact_id: str) -> Contact | None:
        return next((c for c in self.contacts if c.id == contact_id), None)

    def schedule(self, schedule_id: str) -> Schedule | None:
        return next((s for s in self.schedules if s.id == schedule_id), None)

    def policy(self, policy_id: str) -> Policy | None:
        return next((p for p in self.policies if p.id == policy_id), None)

    def contact_by_number(self, number: E164) -> Contact | None:
        return next((c for c in self.contacts if number in c.phones), None)
