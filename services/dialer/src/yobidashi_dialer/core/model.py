"""The incident state the dialer keeps per problem, and the events and commands around it.

An `Incident` lives in JetStream KV (one key per problem). Events come in from the bus and from
Twilio callbacks; `decide` turns (state, event) into a new state plus `Command`s; the shell
stores the state with compare-and-set and carries out the commands, each keyed so that doing
one twice does nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from yobidashi_common.events import (
    AckResult,
    AlertEvent,
    ContactRef,
    KeyPressed,
    ProblemRef,
    Severity,
    Tag,
)
from yobidashi_common.identity import ContactId, is_legacy
from yobidashi_common.phone import E164, MaskedNumber, mask
from yobidashi_dialer.oncall.config import Policy

Language = Literal["ja", "en"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def problem_digest(incident_key: str) -> str:
    """A URL- and key-safe stand-in for a problem key, in call ids and timer tokens.

    128 bits: those ids are de-duplication keys on the bus and marker keys in KV, so two
    problems that shared one would share calls. (0.1 used 48 bits, which a busy year of
    problems can collide in.)
    """
    return hashlib.sha256(incident_key.encode()).hexdigest()[:32]


class Contact(_Model):
    """A person we can ring. ``id`` is who they are; the masked number is only a view of
    ``number`` for logs and speech, and the full number never leaves the dialer in a log."""

    id: ContactId
    name: str | None = None
    number: E164  # the one to ring now
    numbers: list[E164] = Field(default_factory=list)  # all of them; redials take turns
    language: Language = "ja"
    timezone: str = "Asia/Tokyo"

    @model_validator(mode="before")
    @classmethod
    def _rebuild_legacy_id(cls, data: Any) -> Any:
        # 0.1 stored Zabbix-driven contacts as phone:<masked number>, which two people can
        # share; the full number stored beside it says who it really is.
        if isinstance(data, dict) and is_legacy(str(data.get("id", ""))) and "number" in data:
            return {**data, "id": f"tel:{data['number']}"}
        return data

    @property
    def masked_number(self) -> MaskedNumber:
        return mask(self.number)

    def for_attempt(self, attempt: int) -> Contact:
        if not self.numbers:
            return self
        return self.model_copy(update={"number": self.numbers[(attempt - 1) % len(self.numbers)]})

    def ref(self) -> ContactRef:
        return ContactRef(
            id=self.id,
            name=self.name,
            masked_number=self.masked_number,
            language=self.language,
            timezone=self.timezone,
        )


class PageStatus(StrEnum):
    QUEUED = "queued"  # waits its turn in a sequential step
    DIALLING = "dialling"  # a call is requested or being placed
    WAITING = "waiting"  # between attempts (no answer or busy), a redial is scheduled
    RINGING = "ringing"  # the call exists at Twilio and nobody has answered yet
    ANSWERED = "answered"  # a human is on the line
    ACKNOWLEDGED = "acknowledged"  # they pressed 1
    PASSED = "passed"  # they pressed 2
    REACHED = "reached"  # a human answered but decided nothing
    UNREACHED = "unreached"  # attempts used up, voicemail, or the call failed
    CANCELLED = "cancelled"  # stopped because the problem was acknowledged or resolved


ACTIVE = frozenset(
    {PageStatus.DIALLING, PageStatus.WAITING, PageStatus.RINGING, PageStatus.ANSWERED}
)
STOPPABLE = ACTIVE | {PageStatus.QUEUED}
FINAL = frozenset(
    {
        PageStatus.ACKNOWLEDGED,
        PageStatus.PASSED,
        PageStatus.REACHED,
        PageStatus.UNREACHED,
        PageStatus.CANCELLED,
    }
)
ON_THE_PHONE = frozenset({PageStatus.RINGING, PageStatus.ANSWERED})


class Page(_Model):
    """One person being called about one problem at one step, across redial attempts."""

    id: str
    step: int
    round: int = 0
    contact: Contact
    attempt: int = 1
    max_attempts: int
    status: PageStatus
    call_id: str | None = None
    call_sid: str | None = None
    account: str | None = None  # the telephony account that placed the current call
    machine: bool = False
    shared: bool = False  # the current call also announces other problems (a bundle)
    call_ended: bool = False  # the current call reported its final status
    requested_at: AwareDatetime
    placed_at: AwareDatetime | None = None
    answered_at: AwareDatetime | None = None
    outcome: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    EXHAUSTED = "exhausted"


class TimelineEntry(_Model):
    at: AwareDatetime
    what: str
    detail: str = ""
    page: str | None = None


# -- commands ---------------------------------------------------------------------------------


class PlaceCall(_Model):
    kind: Literal["place_call"] = "place_call"
    id: str
    call_id: str
    page_id: str
    attempt: int
    contact: Contact
    requested_at: AwareDatetime
    bundle: str = Field(description="Calls to one person in one bundle group may be bundled.")
    bundle_window: float = 0.0
    redial: bool = False  # a redial of the same page is never held back by the window


class EndCall(_Model):
    kind: Literal["end_call"] = "end_call"
    id: str
    call_sid: str


class LeaveVoicemail(_Model):
    kind: Literal["voicemail"] = "voicemail"
    id: str
    call_sid: str
    language: Language


TimerPurpose = Literal["redial", "watchdog", "step"]


class Timer(_Model):
    """What a timer is for: the same in the command that sets it, on the bus while it waits
    (`store.TimerDue`), and in the event when it fires (`TimerFired`)."""

    token: str
    purpose: TimerPurpose
    page_id: str | None = None
    attempt: int | None = None

    def timer_fields(self) -> dict[str, Any]:
        return self.model_dump(include=set(Timer.model_fields))


class StartTimer(Timer):
    kind: Literal["timer"] = "timer"
    id: str
    due_at: AwareDatetime


CheckReason = Literal["watchdog", "step_over"]


class CheckCall(_Model):
    kind: Literal["check_call"] = "check_call"
    id: str
    call_sid: str
    page_id: str
    attempt: int
    # "watchdog": past the ring timeout, so a call still queued is evidence against its account.
    # "step_over": the step's wait ended with this call still live as far as we know; it may
    # have been placed a moment ago, so its status says nothing about the account.
    reason: CheckReason = "watchdog"


class ReportExhausted(_Model):
    kind: Literal["exhausted"] = "exhausted"
    id: str
    route: str
    policy: str
    rounds: int


Command = Annotated[
    PlaceCall | EndCall | LeaveVoicemail | StartTimer | CheckCall | ReportExhausted,
    Field(discriminator="kind"),
]


class Escalation(_Model):
    """Where a policy-driven incident stands. The policy is a copy taken when it started, so a
    config reload never changes the steps of an escalation already running."""

    route: str
    policy: Policy
    bundle_window: float = 0.0
    round: int = 0
    step: int = 0
    step_started_at: AwareDatetime
    step_due: AwareDatetime
    step_waited: bool = False  # the step's wait is over
    exhausted: bool = False

    @property
    def step_name(self) -> str:
        return f"r{self.round}-s{self.step}"

    def step_token(self, incident_key: str) -> str:
        return f"{problem_digest(incident_key)}-{self.step_name}"

    def is_current_step(self, token: str) -> bool:
        """Timers arrive per incident, so the step's name decides; comparing only that also
        keeps 0.1's shorter digests working for timers set before an upgrade."""
        return token.partition("-")[2] == self.step_name


# -- the incident -----------------------------------------------------------------------------

APPLIED_KEEP = 300
TIMELINE_KEEP = 500


class Incident(_Model):
    key: str
    problem: ProblemRef
    severity: Severity
    title: str
    host: str
    host_groups: list[str] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    started_at: AwareDatetime | None = None
    url: str | None = None
    status: IncidentStatus = IncidentStatus.OPEN
    acked_by: str | None = None  # a name, for people
    acked_by_id: ContactId | None = None  # who pressed the key (None: in Zabbix, or unknown)
    acked_via: Literal["phone", "zabbix"] | None = None
    acked_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    pages: list[Page] = Field(default_factory=list)
    escalation: Escalation | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    applied: list[str] = Field(default_factory=list)
    outbox: list[Command] = Field(default_factory=list)
    created_at: AwareDatetime
    updated_at: AwareDatetime

    @property
    def open(self) -> bool:
        return self.status is IncidentStatus.OPEN

    @property
    def takes_acks(self) -> bool:
        """Exhausted is not done: someone may still call back or press 1 on the fallback."""
        return self.status in (IncidentStatus.OPEN, IncidentStatus.EXHAUSTED)

    def page(self, page_id: str) -> Page | None:
        return next((p for p in self.pages if p.id == page_id), None)

    def page_for_call(self, call_id: str) -> Page | None:
        return next((p for p in self.pages if p.call_id == call_id), None)

    @classmethod
    def from_alert(cls, alert: AlertEvent, now: datetime) -> Incident:
        return cls(
            key=alert.problem_key,
            problem=ProblemRef(
                problem_key=alert.problem_key,
                source_event_id=alert.source_event_id,
                title=alert.title,
            ),
            severity=alert.severity,
            title=alert.title,
            host=alert.host,
            host_groups=alert.host_groups,
            tags=alert.tags,
            started_at=alert.started_at,
            url=alert.url,
            created_at=now,
            updated_at=now,
        )


# -- events -----------------------------------------------------------------------------------


class AlertArrived(_Model):
    kind: Literal["alert"] = "alert"
    alert: AlertEvent

    @property
    def id(self) -> str:
        return f"alert:{self.alert.dedup_key}"


class _DialOutcome(_Model):
    """What became of one dial request: at most one outcome per call id."""

    kind: str
    call_id: str
    page_id: str
    attempt: int

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.call_id}"


class CallPlaced(_DialOutcome):
    kind: Literal["placed"] = "placed"
    call_sid: str
    at: AwareDatetime
    shared: bool = False
    account: str | None = None


class CallNotPlaced(_DialOutcome):
    kind: Literal["not_placed"] = "not_placed"
    reason: str


class CallProgress(_Model):
    """A status or answering-machine callback (or a watchdog's fetch) for one of our calls."""

    kind: Literal["progress"] = "progress"
    call_id: str
    call_sid: str
    status: str
    answered_by: str | None = None
    sequence: int | None = None
    at: AwareDatetime

    @property
    def id(self) -> str:
        return f"progress:{self.call_sid}:{self.status}:{self.answered_by}:{self.sequence}"


class KeyPress(_Model):
    kind: Literal["key"] = "key"
    key: KeyPressed

    @property
    def id(self) -> str:
        return f"key:{self.key.id}"


class TimerFired(Timer):
    kind: Literal["timer"] = "timer"

    @property
    def id(self) -> str:
        return f"timer:{self.token}"


class AckReported(_Model):
    kind: Literal["ack"] = "ack"
    result: AckResult

    @property
    def id(self) -> str:
        r = self.result
        return f"ack:{r.keypress_id}:{r.problem.problem_key}:{r.outcome.value}"


Event = Annotated[
    AlertArrived | CallPlaced | CallNotPlaced | CallProgress | KeyPress | TimerFired | AckReported,
    Field(discriminator="kind"),
]
