"""What `decide` works with: the rules it is given, and the transaction it builds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from yobidashi_common.identity import ContactId
from yobidashi_common.phone import E164
from yobidashi_dialer.core.model import (
    ON_THE_PHONE,
    STOPPABLE,
    TIMELINE_KEEP,
    CheckCall,
    CheckReason,
    Command,
    Contact,
    EndCall,
    Incident,
    Language,
    Page,
    PageStatus,
    PlaceCall,
    StartTimer,
    TimelineEntry,
    TimerPurpose,
    problem_digest,
)
from yobidashi_dialer.oncall.config import Contact as ConfigContact
from yobidashi_dialer.oncall.config import OnCallConfig

ZABBIX_BUNDLE = "zabbix-driven"  # the bundle group of pages whose recipients Zabbix chose


@dataclass(frozen=True)
class Rules:
    """The knobs `decide` needs, from settings and the on-call config."""

    max_attempts: int = 3
    redial_pause: timedelta = timedelta(seconds=60)
    watchdog_after: timedelta = timedelta(seconds=90)
    watchdog_every: timedelta = timedelta(seconds=60)
    bundle_window: timedelta = timedelta(seconds=30)
    default_region: str = "JP"
    default_language: Language = "ja"
    default_timezone: str = "Asia/Tokyo"
    oncall: OnCallConfig = field(default_factory=OnCallConfig)
    directory: Callable[[E164], Contact | None] | None = None

    def known(self, number: E164) -> Contact | None:
        """A contact from the on-call config (or the given directory) with this number."""
        if self.directory is not None:
            return self.directory(number)
        found = self.oncall.contact_by_number(number)
        return contact_from_config(found) if found else None


def contact_from_config(contact: ConfigContact) -> Contact:
    return Contact(
        id=ContactId(contact.id),
        name=contact.name,
        number=contact.phones[0],
        numbers=list(contact.phones),
        language=contact.language,
        timezone=contact.timezone,
    )


@dataclass
class Transition:
    state: Incident | None
    commands: list[Command] = field(default_factory=list)
    # (metric, label, value) the shell records once the state is stored
    observations: list[tuple[str, str, float]] = field(default_factory=list)


def call_id_for(incident_key: str, page_id: str, attempt: int) -> str:
    """Deterministic, so that a replayed request names the same call. Safe in URLs and keys."""
    return f"{problem_digest(incident_key)}-{page_id}-{attempt}"


def who(contact: Contact) -> str:
    return contact.name or contact.masked_number


class Tx:
    """Accumulates what one event does to one incident."""

    def __init__(self, incident: Incident, now: datetime, rules: Rules) -> None:
        self.inc = incident
        self.now = now
        self.rules = rules
        self.commands: list[Command] = []
        self.observations: list[tuple[str, str, float]] = []

    def note(self, what: str, detail: str = "", page: Page | None = None) -> None:
        self.inc.timeline.append(
            TimelineEntry(at=self.now, what=what, detail=detail, page=page.id if page else None)
        )

    def observe(self, metric: str, label: str = "", value: float = 1.0) -> None:
        self.observations.append((metric, label, value))

    def place(self, page: Page, redial: bool = False) -> None:
        page.status = PageStatus.DIALLING
        page.contact = page.contact.for_attempt(page.attempt)
        page.call_id = call_id_for(self.inc.key, page.id, page.attempt)
        page.call_sid = None
        page.machine = False
        page.shared = False
        page.call_ended = False
        page.answered_at = None
        page.placed_at = None
        page.requested_at = self.now
        escalation = self.inc.escalation
        self.commands.append(
            PlaceCall(
                id=f"place:{page.call_id}",
                call_id=page.call_id,
                page_id=page.id,
                attempt=page.attempt,
                contact=page.contact,
                requested_at=self.now,
                bundle=escalation.route if escalation else ZABBIX_BUNDLE,
                bundle_window=(
                    escalation.bundle_window
                    if escalation
                    else self.rules.bundle_window.total_seconds()
                ),
                redial=redial,
            )
        )
        self.note("calling", f"{who(page.contact)}, attempt {page.attempt}", page)

    def page_timer(self, page: Page, purpose: TimerPurpose, token: str, due_at: datetime) -> None:
        """A timer for the page's current attempt: a later attempt ignores it when it fires."""
        self.commands.append(
            StartTimer(
                id=f"timer:{token}",
                token=token,
                purpose=purpose,
                due_at=due_at,
                page_id=page.id,
                attempt=page.attempt,
            )
        )

    def end_call(self, page: Page) -> None:
        # A bundled call also announces other problems: it goes on for them.
        if page.call_sid and not page.shared:
            self.commands.append(EndCall(id=f"end:{page.call_sid}", call_sid=page.call_sid))

    def check_call(self, page: Page, command_id: str, reason: CheckReason = "watchdog") -> None:
        """Ask Twilio how the page's call stands, as if its status callback had come."""
        if page.call_sid:
            self.commands.append(
                CheckCall(
                    id=command_id,
                    call_sid=page.call_sid,
                    page_id=page.id,
                    attempt=page.attempt,
                    reason=reason,
                )
            )

    def stop_calls(self, reason: str, except_call: str | None = None) -> None:
        """Hang up everything ringing, drop every queued or scheduled call."""
        for page in self.inc.pages:
            if page.status not in STOPPABLE or (except_call and page.call_id == except_call):
                continue
            if page.status in ON_THE_PHONE:
                self.end_call(page)
            page.status = PageStatus.CANCELLED
            page.outcome = reason
            self.note("call stopped", reason, page)

    def finish(self) -> Transition:
        self.inc.updated_at = self.now
        del self.inc.timeline[:-TIMELINE_KEEP]
        return Transition(self.inc, self.commands, self.observations)
