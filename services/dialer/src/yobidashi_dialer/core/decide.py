"""decide(state, event, now, rules) -> Transition: the dialer's logic, pure.

No I/O, no clock, no randomness: the same input gives the same output, so every rule is tested
in milliseconds and a replayed event cannot do anything twice (the shell skips events whose id
is in ``Incident.applied`` and commands carry stable ids).

Two modes. **Zabbix-driven**: each problem notification rings the number Zabbix sent it to
(``{ALERT.SENDTO}``), and Zabbix's action steps do the escalating. **Policy-driven**: the first
notification of a problem that matches a route in the on-call config starts that route's
escalation policy (see `escalation`); Zabbix's further notifications for it change nothing.
"""

from __future__ import annotations

from datetime import datetime

from yobidashi_common.events import (
    FINAL_CALL_STATUSES,
    AlertEvent,
    AlertStatus,
    KeyAction,
    UpdateAction,
)
from yobidashi_common.identity import ContactId
from yobidashi_common.phone import InvalidPhoneNumber, normalize
from yobidashi_dialer.core import escalation
from yobidashi_dialer.core.model import (
    APPLIED_KEEP,
    ON_THE_PHONE,
    AckReported,
    AlertArrived,
    CallNotPlaced,
    CallPlaced,
    CallProgress,
    Contact,
    Event,
    Incident,
    IncidentStatus,
    KeyPress,
    LeaveVoicemail,
    Page,
    PageStatus,
    TimerFired,
)
from yobidashi_dialer.core.tx import Rules, Transition, Tx, who
from yobidashi_dialer.oncall.routing import route_for

__all__ = ["Rules", "Transition", "decide"]

HEARTBEAT_TAG = ("yobidashi", "heartbeat")


def is_heartbeat(alert: AlertEvent) -> bool:
    """The canary's synthetic alerts ring their own number, never an on-call route."""
    return any((t.tag, t.value) == HEARTBEAT_TAG for t in alert.tags)


REDIALLED = frozenset({"no-answer", "busy"})


def decide(state: Incident | None, event: Event, now: datetime, rules: Rules) -> Transition:
    if isinstance(event, AlertArrived):
        incident = state.model_copy(deep=True) if state else Incident.from_alert(event.alert, now)
    elif state is None:
        return Transition(None)  # nothing known about this problem: nothing to do
    else:
        incident = state.model_copy(deep=True)
    tx = Tx(incident, now, rules)
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
    escalation.advance(tx)
    incident.applied.append(event.id)
    del incident.applied[:-APPLIED_KEEP]
    return tx.finish()


# -- alerts ---------------------------------------------------------------------------------------


def _on_alert(tx: Tx, alert: AlertEvent) -> None:
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
    if not inc.open:
        tx.note("notification ignored", f"the problem is already {inc.status.value}")
        return
    if inc.escalation is not None:
        # Zabbix notifies once per recipient and per step; the policy already runs.
        tx.observe("suppressed_duplicate")
        tx.note("duplicate notification", "the escalation policy is already running")
        return
    route = (
        route_for(alert, tx.rules.oncall.routes)
        if not inc.pages and not is_heartbeat(alert)
        else None
    )
    if alert.acknowledged:
        inc.status = IncidentStatus.ACKNOWLEDGED
        inc.acked_via = "zabbix"
        inc.acked_at = tx.now
        tx.note("not calling", "Zabbix reports the problem as acknowledged already")
        return
    if route is not None:
        escalation.start(tx, alert, route)
        return
    # Zabbix-driven mode: ring whoever Zabbix sent this notification to.
    if not alert.sendto:
        tx.note("not calling", "the notification has no recipient ({ALERT.SENDTO} is empty)")
        return
    try:
        number = normalize(alert.sendto, tx.rules.default_region)
    except InvalidPhoneNumber as exc:
        tx.note("not calling", str(exc))
        tx.observe("dial_error", "invalid_number")
        return
    contact = tx.rules.known(number) or Contact(
        id=ContactId.of_number(number),
        number=number,
        language=tx.rules.default_language,
        timezone=tx.rules.default_timezone,
    )
    busy = next((p for p in inc.pages if p.active and p.contact.id == contact.id), None)
    if busy is not None:
        tx.note("already calling", f"{who(busy.contact)} for this problem", busy)
        return
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


def _on_update(tx: Tx, alert: AlertEvent) -> None:
    inc, update = tx.inc, alert.update
    if update is None:
        return
    by = update.user or "someone"
    if update.from_yobidashi:
        tx.note("Zabbix confirmed", "our acknowledgement came back as an update")
        return
    if update.new_severity is not None and update.new_severity is not inc.severity:
        tx.note("severity changed", f"{inc.severity.value} → {update.new_severity.value} by {by}")
        inc.severity = update.new_severity
    if UpdateAction.CLOSED in update.actions:
        if inc.status is not IncidentStatus.RESOLVED:
            inc.status = IncidentStatus.RESOLVED
            inc.resolved_at = update.at or tx.now
            tx.note("closed in Zabbix", f"by {by}")
            tx.stop_calls("problem closed in Zabbix")
        return
    if UpdateAction.ACKNOWLEDGED in update.actions:
        if inc.open:
            inc.status = IncidentStatus.ACKNOWLEDGED
            inc.acked_by = update.user
            inc.acked_by_id = None
            inc.acked_via = "zabbix"
            inc.acked_at = update.at or tx.now
            tx.note("acknowledged in Zabbix", f"by {by}")
            tx.stop_calls(f"acknowledged in Zabbix by {by}")
        else:
            tx.note("acknowledged in Zabbix", f"by {by} (already {inc.status.value})")
    if UpdateAction.UNACKNOWLEDGED in update.actions:
        tx.note("unacknowledged in Zabbix", f"by {by}")
        if inc.status is IncidentStatus.ACKNOWLEDGED:
            inc.status = IncidentStatus.OPEN
            inc.acked_by = inc.acked_by_id = inc.acked_via = inc.acked_at = None
    if UpdateAction.COMMENTED in update.actions and update.message:
        tx.note("comment in Zabbix", f"{by}: {update.message[:200]}")


# -- calls ----------------------------------------------------------------------------------------


def _on_placed(tx: Tx, event: CallPlaced) -> None:
    page = tx.inc.page(event.page_id)
    if page is None or page.attempt != event.attempt:
        return
    if page.call_id != event.call_id:
        if page.status in ON_THE_PHONE:
            return  # already served by another call
        page.call_id = event.call_id  # a bundled call, placed for another page, covers this one
    page.call_sid = event.call_sid
    page.account = event.account
    page.shared = event.shared
    if not tx.inc.open or page.status not in (PageStatus.DIALLING, *ON_THE_PHONE):
        # Stopped while the call was being placed: hang up what we just created.
        tx.end_call(page)
        tx.note("call ended at once", "placed after the calling had stopped", page)
        return
    if page.status is PageStatus.DIALLING:
        page.status = PageStatus.RINGING
    # (a status callback may have overtaken this report and already marked it ringing)
    page.placed_at = page.placed_at or event.at
    tx.page_timer(page, "watchdog", f"{event.call_id}-watch-1", event.at + tx.rules.watchdog_after)


def _on_not_placed(tx: Tx, event: CallNotPlaced) -> None:
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


def _on_progress(tx: Tx, event: CallProgress) -> None:
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
        tx.note("answered", who(page.contact), page)
    elif event.status in ("initiated", "ringing", "queued") and page.status is PageStatus.DIALLING:
        page.status = PageStatus.RINGING
    if event.status not in FINAL_CALL_STATUSES or page.call_ended:
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
        tx.page_timer(page, "redial", f"{page.call_id}-redial", due)
        tx.note(event.status, f"calling again at {due.isoformat(timespec='seconds')}", page)
        return
    else:
        page.status = PageStatus.UNREACHED
        page.outcome = event.status
    tx.note("call ended", f"{who(page.contact)}: {page.outcome}", page)


def _on_key(tx: Tx, event: KeyPress) -> None:
    key, inc = event.key, tx.inc
    page = inc.page_for_call(key.call_id)
    by = key.contact.name or key.contact.masked_number
    tx.observe("keypress", key.action.value)
    if key.action in (KeyAction.ACKNOWLEDGE, KeyAction.CLOSE):
        if not inc.takes_acks:
            tx.note("key pressed", f"{by} pressed {key.digit}; already {inc.status.value}", page)
            return
        if inc.started_at is not None:
            tx.observe("time_to_acknowledge", "", (key.at - inc.started_at).total_seconds())
        inc.status = IncidentStatus.ACKNOWLEDGED
        inc.acked_by = by
        inc.acked_by_id = key.contact.identity
        inc.acked_via = "phone"
        inc.acked_at = key.at
        if page is not None:
            page.status = PageStatus.ACKNOWLEDGED
            page.outcome = f"pressed {key.digit}"
        tx.note("acknowledged by phone", f"{by} pressed {key.digit}", page)
        tx.stop_calls(f"acknowledged by {by}", except_call=key.call_id)
    elif key.action is KeyAction.PASS:
        if page is not None and page.active:
            page.status = PageStatus.PASSED
            page.outcome = f"pressed {key.digit}"
        tx.note("passed", f"{by} passed it on", page)
    else:
        tx.note("key pressed", f"{by} pressed {key.digit} ({key.action.value})", page)


def _on_timer(tx: Tx, event: TimerFired) -> None:
    if event.purpose == "step":
        escalation.on_timer(tx, event)
        return
    page = tx.inc.page(event.page_id) if event.page_id else None
    if page is None or page.attempt != event.attempt:
        return
    if event.purpose == "redial":
        if page.status is PageStatus.WAITING and tx.inc.open:
            page.attempt += 1
            tx.place(page, redial=True)
    elif event.purpose == "watchdog" and page.status in ON_THE_PHONE and page.call_sid:
        # Status callbacks can be lost (our endpoint down, NATS down): ask Twilio directly,
        # and look again later for as long as the call seems to be alive.
        tx.check_call(page, f"check:{event.token}")
        n = int(event.token.rsplit("-", 1)[1]) + 1
        tx.page_timer(
            page, "watchdog", f"{page.call_id}-watch-{n}", tx.now + tx.rules.watchdog_every
        )


def _on_ack(tx: Tx, event: AckReported) -> None:
    r = event.result
    if r.outcome.value == "failed":
        tx.note("Zabbix acknowledgement failed", r.detail or "")
    else:
        tx.note(f"Zabbix {r.outcome.value.replace('_', ' ')}", f"as {r.zabbix_user or 'acker'}")
