"""Versioned event contracts: the only vocabulary the services share.

Every model carries ``schema_version``. A v1 consumer ignores fields it does not know
(``extra="ignore"``), so adding an optional field is a compatible change; anything else is v2
on a new subject (see `subjects`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from yobidashi_common.identity import ContactId

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class Contract(BaseModel):
    """Base for every message on the bus."""

    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)

    schema_version: Literal[1] = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class Severity(StrEnum):
    """Zabbix's six trigger severities, by name, in ascending order."""

    NOT_CLASSIFIED = "not_classified"
    INFORMATION = "information"
    WARNING = "warning"
    AVERAGE = "average"
    HIGH = "high"
    DISASTER = "disaster"

    @classmethod
    def from_zabbix(cls, value: int) -> Severity:
        """Map Zabbix's 0–5 (``{EVENT.NSEVERITY}``) to a name."""
        return _SEVERITY_ORDER[ZabbixSeverity(value)]

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


class ZabbixSeverity(IntEnum):
    NOT_CLASSIFIED = 0
    INFORMATION = 1
    WARNING = 2
    AVERAGE = 3
    HIGH = 4
    DISASTER = 5


_SEVERITY_ORDER = list(Severity)


class AlertStatus(StrEnum):
    PROBLEM = "problem"
    RESOLVED = "resolved"
    UPDATED = "updated"


class UpdateAction(StrEnum):
    """What an operator did to a problem (Zabbix's ``{EVENT.UPDATE.ACTION}``)."""

    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    COMMENTED = "commented"
    SEVERITY_CHANGED = "severity_changed"
    CLOSED = "closed"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"


class Tag(BaseModel):
    model_config = ConfigDict(frozen=True)

    tag: str
    value: str = ""


class AlertUpdate(BaseModel):
    """The details of a problem update: an ack, unack, comment or severity change."""

    model_config = ConfigDict(frozen=True)

    actions: list[UpdateAction]
    user: str | None = Field(None, description="Who did it, as Zabbix names them.")
    message: str | None = None
    new_severity: Severity | None = None
    at: AwareDatetime | None = None
    from_yobidashi: bool = Field(
        False,
        description="Our own acknowledgement coming back through the media type: already known.",
    )


class AlertEvent(Contract):
    """One notification from Zabbix, normalised.

    Subject: ``yobidashi.alerts.v1.<status>.<severity>``.
    """

    source: Literal["zabbix"] = "zabbix"
    source_event_id: NonEmpty = Field(description="Zabbix's {EVENT.ID} of the problem.")
    problem_key: NonEmpty = Field(
        description="Stable across the problem's life (problem, updates, recovery): "
        "zabbix:<eventid>."
    )
    dedup_key: NonEmpty = Field(
        description="Identifies this one notification; Zabbix's retries of it share it. "
        "Used as Nats-Msg-Id."
    )
    status: AlertStatus
    severity: Severity
    title: str
    host: str
    host_groups: list[str] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    trigger_id: str | None = None
    started_at: AwareDatetime | None = None
    received_at: AwareDatetime
    resolved_at: AwareDatetime | None = None
    recovery_event_id: str | None = None
    sendto: str | None = Field(
        None, description="Zabbix's {ALERT.SENDTO}: in Zabbix-driven mode, the number to ring."
    )
    acknowledged: bool = Field(
        False, description="Whether Zabbix saw it acknowledged when it sent."
    )
    update: AlertUpdate | None = None
    message: str | None = Field(None, description="The action's rendered message, if any.")
    url: str | None = Field(None, description="Link to the problem in the Zabbix frontend.")


# -- the phone side: published by the dialer -----------------------------------------------------


class ProblemRef(BaseModel):
    """Which problem a call or keypress is about (a bundled call covers several)."""

    model_config = ConfigDict(frozen=True)

    problem_key: NonEmpty
    source: Literal["zabbix"] = "zabbix"
    source_event_id: NonEmpty
    title: str = ""


class ContactRef(BaseModel):
    """Who was called: ``id`` says who they are, ``name`` and ``masked_number`` are for people.

    The masked number is what logs, speech and Zabbix messages show; many phones share it, so
    it never identifies anyone (see `identity`).
    """

    model_config = ConfigDict(frozen=True)

    id: NonEmpty = Field(
        description="Contact id from the on-call config, or tel:+<E.164> for a number only "
        "Zabbix knows. (Yobidashi 0.1 wrote phone:<masked>, which identifies nobody.)"
    )
    name: str | None = None
    masked_number: str = Field(description="E.g. +81 90-****-5678, safe for logs and Zabbix.")
    language: Literal["ja", "en"] = "ja"
    timezone: str = "Asia/Tokyo"

    @property
    def identity(self) -> ContactId | None:
        """Who this is, or None for an id that identifies nobody (0.1's masked-number ids)."""
        try:
            return ContactId(self.id)
        except ValueError:
            return None


# Twilio's CallStatus values.
CallStatus = Literal[
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
]
CALL_STATUSES: frozenset[str] = frozenset(get_args(CallStatus))
# The call is over: no more callbacks come for it.
FINAL_CALL_STATUSES: frozenset[str] = frozenset(
    {"completed", "busy", "no-answer", "failed", "canceled"}
)


class CallStatusChanged(Contract):
    """A Twilio status or answering-machine callback, verified and stored as it came.

    Subject: ``yobidashi.calls.v1.status.<status>``.
    """

    call_id: NonEmpty = Field(description="Our id for the dial attempt; in every callback URL.")
    call_sid: NonEmpty
    problems: list[ProblemRef]
    contact: ContactRef
    status: CallStatus
    answered_by: str | None = Field(None, description="human, machine_start, machine_end_beep…")
    sequence: int | None = None
    duration_seconds: int | None = None
    sip_response_code: int | None = None
    at: AwareDatetime


class CallFailed(Contract):
    """A call that could not be placed at all (invalid number, permanent Twilio error).

    Subject: ``yobidashi.calls.v1.failed``.
    """

    call_id: NonEmpty
    problems: list[ProblemRef]
    contact: ContactRef
    code: int | None = Field(None, description="Twilio error code, e.g. 21211 (invalid To).")
    reason: str
    at: AwareDatetime


class KeyAction(StrEnum):
    """What a key means. 1 acknowledges, 2 passes, * repeats; close and comment are optional."""

    ACKNOWLEDGE = "acknowledge"
    CLOSE = "close"
    COMMENT = "comment"
    PASS = "pass"  # noqa: S105 - a key action, not a password
    REPEAT = "repeat"
    INVALID = "invalid"


class KeyPressed(Contract):
    """An engineer pressed a key during a call. Subject: ``yobidashi.keys.v1.<action>``."""

    id: NonEmpty = Field(description="Stable per callback: replays of it share the id.")
    call_id: NonEmpty
    call_sid: NonEmpty
    problems: list[ProblemRef]
    contact: ContactRef
    digit: str
    action: KeyAction
    at: AwareDatetime


class EscalationExhausted(Contract):
    """A policy ran out and nobody took the problem.

    Subject: ``yobidashi.escalations.v1.exhausted``. Something outside Yobidashi (a second paging
    channel, a chat room) should hear about this.
    """

    problem: ProblemRef
    route: str
    policy: str
    rounds: int
    at: AwareDatetime


# -- the Zabbix side: published by the acker ------------------------------------------------------


# Every acknowledgement the acker writes says this; ingest recognises our own ack coming back
# through the media type by it (and by the acker's Zabbix username).
OWN_ACK_MARKER = "via Yobidashi"


class AckOutcome(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    ALREADY_ACKNOWLEDGED = "already_acknowledged"
    COMMENTED = "commented"  # a message only, for the optional comment key
    FAILED = "failed"


class AckResult(Contract):
    """What became of an acknowledgement in Zabbix. Subject: ``yobidashi.acks.v1.<outcome>``."""

    keypress_id: NonEmpty
    problem: ProblemRef
    contact: ContactRef
    outcome: AckOutcome
    action: int = Field(description="The event.acknowledge action bitmask that was sent.")
    message: str | None = None
    detail: str | None = Field(None, description="Why it failed, in words.")
    zabbix_user: str | None = None
    pressed_at: AwareDatetime
    at: AwareDatetime


def utcnow() -> datetime:
    return datetime.now(UTC)
