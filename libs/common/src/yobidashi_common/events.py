"""Versioned event contracts: the only vocabulary the services share.

Every model carries ``schema_version``. A v1 consumer ignores fields it does not know
(``extra="ignore"``), so adding an optional field is a compatible change; anything else is v2
on a new subject (see `subjects`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

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


def utcnow() -> datetime:
    return datetime.now(UTC)
