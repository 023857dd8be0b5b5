"""decide(state, event, now, rules) -> Transition: the dialer's logic, pure.

No I/O, no clock, no randomness: the same input gives the same output, so every rule is tested
in milliseconds and a replayed event cannot do anything twice (the shell skips events whose id
is in ``Incident.applied`` and commands carry stable ids).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from yobidashi_common.events import AlertEvent, AlertStatus, KeyAction, UpdateAction
from yobidashi_common.phone import InvalidPhoneNumber, mask, normalize
from yobidashi_dialer.core.model import (
    APPLIED_KEEP,
    ON_THE_PHONE,
    TIMELINE_KEEP,
    AckReported,
    AlertArrived,
    CallNotPlaced,
    CallPlaced,
    CallProgress,
    CheckCall,
    Command,
    Contact,
    EndCall,
    Event,
    Incident,
    IncidentStatus,
    KeyPress,
    Language,
    LeaveVoicemail,
    Page,
    PageStatus,
    PlaceCall,
    StartTimer,
    TimelineEntry,
    TimerFired,
)

TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
REDIALLED = frozenset({"no-answer", "busy"})


@dataclass(frozen=True)
class Rules:
    """The knobs `decide` needs, from settings and the on-call config."""

    max_attempts: int = 3
    redial_pause: timedelta = timedelta(seconds=60)
    watchdog_after: timedelta = timedelta(seconds=90)
    watchdog_every: timedelta = timedelta(seconds=60)
    default_region: str = "JP"
    default_language: Language = "ja"
    default_timezone: str = "Asia/Tokyo"
    directory: Callable[[str], Contact | None] = lambda _number: None


@dataclass
class Transition:
    state: Incident | None
    commands: list[Command] = field(default_factory=list)
    # (metric, label, value) the shell records once the state is stored
    observations: list[tuple[str, str, float]] = field(default_factory=list)


def call_id_for(incident_key: str, page_id: str, attempt: int) -> str:
    """Deterministic, so that a replayed request names the same call. Safe in URLs and keys."""
    digest = hashlib.sha256(incident_key.encode()).hexdigest()[:12]
    return f"{digest}-{page_id}-{attempt}"


class _Tx:
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

    def place(self, page: Page) -> None:
        page.status = PageStatus.DIALLING
        page.call_id = call_id_for(self.inc.key, page.id, page.attempt)
        page.call_sid = None
        page.machine = False
        page.call_ended = False
        page.answered_at = None
        page.placed_at = None
        page.requested_at = self.now
        self.commands.append(
            PlaceCall(
                id=f"place:{page.call_id}",
                call_id=page.call_id,
                page_id=page.id,
                attempt=page.attempt,
                contact=page.contact,
                requested_at=self.now,
            )
        )
        self.note("calling", f"{_who(page.contact)}, attempt {page.attempt}", page)

    def end_call(self, page: Page) -> None:
        if page.call_sid:
            self.commands.append(EndCall(id=f"end:{page.call_sid}", call_sid=page.call_sid))

    def stop_calls(self, reason: str, except_call: str | None = None) -> None:
        """Hang up everything ringing, drop every queued or scheduled call."""
        for page in self.inc.pages:
            if not page.active or (except_call and page.call_id == except_call):
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


def _who(contact: Contact) -> str:
    return contact.name or mask(contact.number)


def decide(state: Incident | None, event: Event, now: datetime, rules: Rules) -> Transition:
    if isinstance(event, AlertArrived):
        incident = state.model_copy(deep=True) if state else Incident.from_alert(event.alert, now)
    elif state is None:
        return Transition(None)  # nothing known about this problem: nothing to do
    else:
        incident = state.model_copy(deep=True)
    tx = _Tx(incident, now, rules)
    match event:
        case AlertArrived(alert=alert):
            _on_alert(tx, alert)
        case CallPlaced():
            _on_placed(tx, event)
        case CallNotPlaced():
            _on_not_placed(tx, event)
        case CallProgress():
            _on_progress(tx, event)
        case KeyPress():
            _on_key(tx, event)
        case TimerFired():
            _on_timer(tx, event)
        case AckReported():
            _on_ack(tx, event)
    incident.applied.append(event.id)
    del incident.applied[:-APPLIED_KEEP]
    return tx.finish()


# -- alerts ---------------------------------------------------------------------------------------


def _on_alert(tx: _Tx, alert: AlertEvent) -> None:
    inc = tx.inc
    if alert.status is AlertStatus.RESOLVED:
        if inc.status is IncidentStatus.RESOLVED:
            return
        inc.status = IncidentStatus.RESOLVED
        inc.resolved_at = alert.resolved_at or tx.now
        tx.note("resolved", "the problem recovered in Zabbix")
        tx.stop_calls("problem resolved")
        return
    if alert.status is AlertStatus.UPDATED:
        _on_update(tx, alert)
        return
    # A problem notification: in Zabbix-driven mode, ring whoever Zabbix sent it to.
    if not inc.open:
        tx.note("notification ignored", f"the problem is already {inc.status.value}")
        return
    if alert.acknowledged:
        inc.status = IncidentStatus.ACKNOWLEDGED
        inc.acked_via = "zabbix"
        inc.acked_at = tx.now
        tx.note("not calling", "Zabbix reports the problem as acknowledged already")
        return
    if not alert.sendto:
        tx.note("not calling", "the notification has no recipient ({ALERT.SENDTO} is empty)")
        return
    try:
        number = normalize(alert.sendto, tx.rules.default_region)
    except InvalidPhoneNumber as exc:
        tx.note("not calling", str(exc))
        tx.observe("dial_error", "invalid_number")
        return
    busy = next((p for p in inc.pages if p.active and p.contact.number == number), None)
    if busy is not None:
        tx.note("already calling", f"{_who(busy.contact)} for this problem", busy)
        return
    contact = tx.rules.directory(number) or Contact(
        id=f"phone:{mask(number)}",
        number=number,
        language=tx.rules.default_language,
        timezone=tx.rules.default_timezone,
    )
    page = Page(
        id=f"z{len(inc.pages) + 1}",
        step=len(inc.pages) + 1,
        contact=contact,
        max_attempts=tx.rules.max_attempts,
        status=PageStatus.DIALLING,
        requested_at=tx.now,
    )
    inc.pages.append(page)
    tx.place(page)


def _on_update(tx: _Tx, alert: AlertEvent) -> None:
    inc, update = tx.inc, alert.update
    if update is None:
        return
    who = update.user or "someone"
    if update.from_yobidashi:
        tx.note("Zabbix confirmed", "our acknowledgement came back as an update")
        return
    if update.new_severity is not None and update.new_severity is not inc.severity:
        tx.note("severity changed", f"{inc.severity.value} → {update.new_severity.value} by {who}")
        inc.severity = update.new_severity
    if UpdateAction.CLOSED in update.actions:
        if inc.status is not IncidentStatus.RESOLVED:
            inc.status = IncidentStatus.RESOLVED
            inc.resolved_at = update.at or tx.now
            tx.note("closed in Zabbix", f"by {who}")
            tx.stop_calls("problem closed in Zabbix")
        return
    if UpdateAction.ACKNOWLEDGED in update.actions:
        if inc.open:
            inc.status = IncidentStatus.ACKNOWLEDGED
            inc.acked_by = update.user
            inc.acked_via = "zabbix"
            inc.acked_at = update.at or tx.now
            tx.note("acknowledged in Zabbix", f"by {who}")
            tx.stop_calls(f"acknowledged in Zabbix by {who}")
        else:
            tx.note("acknowledged in Zabbix", f"by {who} (already {inc.status.value})")
    if UpdateAction.UNACKNOWLEDGED in update.actions:
        tx.note("unacknowledged in Zabbix", f"by {who}")
        if inc.status is IncidentStatus.ACKNOWLEDGED:
            inc.status = IncidentStatus.OPEN
            inc.acked_by = inc.acked_via = inc.acked_at = None
    if UpdateAction.COMMENTED in update.actions and update.message:
        tx.note("comment in Zabbix", f"{who}: {update.message[:200]}")


# -- calls ----------------------------------------------------------------------------------------


def _on_placed(tx: _Tx, event: CallPlaced) -> None:
    page = tx.inc.page(event.page_id)
    if page is None or page.call_id != event.call_id:
        return
    page.call_sid = event.call_sid
    if not tx.inc.open or page.status not in (PageStatus.DIALLING, *ON_THE_PHONE):
        # Stopped while the call was being placed: hang up what we just created.
        tx.end_call(page)
        tx.note("call ended at once", "placed after the calling had stopped", page)
        return
    if page.status is PageStatus.DIALLING:
        page.status = PageStatus.RINGING
    # (a status callback may have overtaken this report and already marked it ringing)
    page.placed_at = page.placed_at or event.at
    tx.commands.append(
        StartTimer(
            id=f"timer:{event.call_id}-watch-1",
            token=f"{event.call_id}-watch-1",
            purpose="watchdog",
            due_at=event.at + tx.rules.watchdog_after,
            page_id=page.id,
            attempt=page.attempt,
        )
    )


def _on_not_placed(tx: _Tx, event: CallNotPlaced) -> None:
    page = tx.inc.page(event.page_id)
    if page is None or page.call_id != event.call_id or not page.active:
        return
    page.status = PageStatus.UNREACHED
    page.outcome = event.reason
    tx.note("call failed", event.reason, page)


def _outcome(page: Page, status: str) -> str:
    if page.machine:
        return "machine"
    if page.answered_at is not None:
        return "answered"
    return status.replace("-", "_")


def _on_progress(tx: _Tx, event: CallProgress) -> None:
    page = tx.inc.page_for_call(event.call_id)
    if page is None:
        return
    if page.call_sid is None:
        page.call_sid = event.call_sid  # the callback overtook our own record of the create
    answered_by = event.answered_by or ""
    if answered_by.startswith("machine") or answered_by == "fax":
        if page.status in ON_THE_PHONE and not page.machine:
            page.machine = True
            tx.commands.append(
                LeaveVoicemail(
                    id=f"voicemail:{event.call_sid}",
                    call_sid=event.call_sid,
                    language=page.contact.language,
                )
            )
            tx.note(
                "answering machine", "leaving a voicemail; this does not count as reached", page
            )
    elif event.status == "in-progress" and page.status in (PageStatus.DIALLING, PageStatus.RINGING):
        page.status = PageStatus.ANSWERED
        page.answered_at = event.at
        if page.placed_at is not None:
            tx.observe("time_to_answer", "", (event.at - page.placed_at).total_seconds())
        tx.note("answered", _who(page.contact), page)
    elif event.status in ("initiated", "ringing", "queued") and page.status is PageStatus.DIALLING:
        page.status = PageStatus.RINGING
    if event.status not in TERMINAL_CALL_STATUSES or page.call_ended:
        return
    page.call_ended = True  # the callback and the watchdog may both report it: count it once
    outcome = _outcome(page, event.status)
    tx.observe("call", outcome)
    if not page.active:
        return
    if outcome == "answered":
        page.status = PageStatus.REACHED
        page.outcome = "answered, no key pressed"
    elif outcome == "machine":
        page.status = PageStatus.UNREACHED
        page.outcome = "voicemail"
    elif event.status in REDIALLED and page.attempt < page.max_attempts and tx.inc.open:
        page.status = PageStatus.WAITING
        page.outcome = event.status
        due = tx.now + tx.rules.redial_pause
        token = f"{page.call_id}-redial"
        tx.commands.append(
            StartTimer(
                id=f"timer:{token}",
                token=token,
                purpose="redial",
                due_at=due,
                page_id=page.id,
                attempt=page.attempt,
            )
        )
        tx.note(event.status, f"calling again at {due.isoformat(timespec='seconds')}", page)
        return
    else:
        page.status = PageStatus.UNREACHED
        page.outcome = event.status
    tx.note("call ended", f"{_who(page.contact)}: {page.outcome}", page)


def _on_key(tx: _Tx, event: KeyPress) -> None:
    key, inc = event.key, tx.inc
    page = inc.page_for_call(key.call_id)
    who = key.contact.name or key.contact.masked_number
    tx.observe("keypress", key.action.value)
    if key.action in (KeyAction.ACKNOWLEDGE, KeyAction.CLOSE):
        if not inc.open:
            tx.note("key pressed", f"{who} pressed {key.digit}; already {inc.status.value}", page)
            return
        inc.status = IncidentStatus.ACKNOWLEDGED
        inc.acked_by = who
        inc.acked_via = "phone"
        inc.acked_at = key.at
        if page is not None:
            page.status = PageStatus.ACKNOWLEDGED
            page.outcome = f"pressed {key.digit}"
        tx.note("acknowledged by phone", f"{who} pressed {key.digit}", page)
        tx.stop_calls(f"acknowledged by {who}", except_call=key.call_id)
    elif key.action is KeyAction.PASS:
        if page is not None and page.active:
            page.status = PageStatus.PASSED
            page.outcome = f"pressed {key.digit}"
        tx.note("passed", f"{who} passed it on", page)
    else:
        tx.note("key pressed", f"{who} pressed {key.digit} ({key.action.value})", page)


def _on_timer(tx: _Tx, event: TimerFired) -> None:
    page = tx.inc.page(event.page_id) if event.page_id else None
    if page is None or page.attempt != event.attempt:
        return
    if event.purpose == "redial":
        if page.status is PageStatus.WAITING and tx.inc.open:
            page.attempt += 1
            tx.place(page)
    elif event.purpose == "watchdog" and page.status in ON_THE_PHONE and page.call_sid:
        # Status callbacks can be lost (our endpoint down, NATS down): ask Twilio directly,
        # and look again later for as long as the call seems to be alive.
        tx.commands.append(
            CheckCall(
                id=f"check:{event.token}",
                call_sid=page.call_sid,
                page_id=page.id,
                attempt=page.attempt,
            )
        )
        n = int(event.token.rsplit("-", 1)[1]) + 1
        token = f"{page.call_id}-watch-{n}"
        tx.commands.append(
            StartTimer(
                id=f"timer:{token}",
                token=token,
                purpose="watchdog",
                due_at=tx.now + tx.rules.watchdog_every,
                page_id=page.id,
                attempt=page.attempt,
            )
        )


def _on_ack(tx: _Tx, event: AckReported) -> None:
    r = event.result
    if r.outcome.value == "failed":
        tx.note("Zabbix acknowledgement failed", r.detail or "")
    else:
        tx.note(f"Zabbix {r.outcome.value.replace('_', ' ')}", f"as {r.zabbix_user or 'acker'}")
