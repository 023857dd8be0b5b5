"""Policy-driven escalation: steps, targets, waits, repeats, fallback. Pure, like `decide`.

A step rings its targets (at once, or one after another); it is over when every target has been
tried and its wait (counted from the step's start) has passed, or at once when someone pressed
2 ("pass it on"). Then the next step starts; after the last, the policy repeats ``repeat``
times, then rings the fallback contact if there is one, then is exhausted.
"""

from __future__ import annotations

from yobidashi_common.events import AlertEvent
from yobidashi_dialer.core.model import (
    ACTIVE,
    ON_THE_PHONE,
    Escalation,
    IncidentStatus,
    Page,
    PageStatus,
    ReportExhausted,
    StartTimer,
    TimerFired,
)
from yobidashi_dialer.core.tx import Tx, contact_from_config, who
from yobidashi_dialer.oncall.config import Route, Step
from yobidashi_dialer.oncall.schedule import who_is_on_call

FALLBACK_STEP = -1


def start(tx: Tx, alert: AlertEvent, route: Route) -> None:
    policy = tx.rules.oncall.policy(route.policy)
    assert policy is not None, "routes are checked against policies when the config loads"
    window = route.bundle_window if route.bundle_window is not None else tx.rules.bundle_window
    tx.inc.escalation = Escalation(
        route=route.id,
        policy=policy,
        bundle_window=window.total_seconds(),
        step_started_at=tx.now,
        step_due=tx.now,
    )
    tx.note("escalation started", f"route {route.id}, policy {policy.id}")
    _start_step(tx, 0)


def _step(tx: Tx) -> Step:
    escalation = tx.inc.escalation
    assert escalation is not None
    return escalation.policy.steps[escalation.step]


def _targets(tx: Tx, step: Step) -> list[Page]:
    """The step's people now: contacts as named, schedules as whoever is on call."""
    escalation = tx.inc.escalation
    assert escalation is not None
    config = tx.rules.oncall
    pages: list[Page] = []
    seen: set[str] = set()
    for target in step.targets:
        contact_id = target.contact
        if target.schedule is not None:
            schedule = config.schedule(target.schedule)
            found = who_is_on_call(schedule, tx.now) if schedule else None
            if found is None or schedule is None:
                tx.note("nobody on call", f"schedule {target.schedule}")
                continue
            contact_id = found.contact
            if found.override:
                tx.note(
                    "on call by override", f"{schedule.id}: {contact_id}, {found.because(schedule)}"
                )
        contact = config.contact(contact_id) if contact_id else None
        if contact is None:
            tx.note("unknown contact", f"{contact_id} is no longer in the on-call config")
            continue
        if contact.id in seen:
            continue
        seen.add(contact.id)
        pages.append(
            Page(
                id=f"r{escalation.round}s{escalation.step}t{len(pages)}",
                step=escalation.step,
                round=escalation.round,
                contact=contact_from_config(contact),
                max_attempts=escalation.policy.attempts or tx.rules.max_attempts,
                status=PageStatus.QUEUED,
                requested_at=tx.now,
            )
        )
    return pages


def _start_step(tx: Tx, index: int) -> None:
    escalation = tx.inc.escalation
    assert escalation is not None
    escalation.step = index
    escalation.step_started_at = tx.now
    step = _step(tx)
    escalation.step_due = tx.now + step.wait
    escalation.step_waited = False
    tx.observe("step")
    token = escalation.step_token(tx.inc.key)
    tx.commands.append(
        StartTimer(id=f"timer:{token}", token=token, purpose="step", due_at=escalation.step_due)
    )
    pages = _targets(tx, step)
    tx.note(
        f"step {index + 1}",
        f"round {escalation.round + 1}: {', '.join(who(p.contact) for p in pages) or 'nobody'}",
    )
    tx.inc.pages.extend(pages)
    if step.order == "parallel":
        for page in pages:
            tx.place(page)
    elif pages:
        tx.place(pages[0])


def on_timer(tx: Tx, event: TimerFired) -> None:
    escalation = tx.inc.escalation
    if escalation is None or not escalation.is_current_step(event.token):
        return  # a timer of a step that is over
    escalation.step_waited = True
    _check_live_calls(tx, event.token)
    advance(tx)


def _check_live_calls(tx: Tx, token: str) -> None:
    """The step waits for its calls to end; one that still looks live may have ended while no
    dialer was up to hear its status callback (Twilio does not send it again). Ask Twilio now
    rather than at the watchdog's time, so the next step starts on time."""
    for page in _current_pages(tx):
        if page.status in ON_THE_PHONE:
            tx.check_call(page, f"check:{token}:{page.id}", reason="step_over")


def _current_pages(tx: Tx) -> list[Page]:
    escalation = tx.inc.escalation
    assert escalation is not None
    return [p for p in tx.inc.pages if p.round == escalation.round and p.step == escalation.step]


def advance(tx: Tx) -> None:
    """Move on if the current step is over. Safe to call after any change."""
    escalation = tx.inc.escalation
    if escalation is None or escalation.exhausted or not tx.inc.open:
        return
    if escalation.step == FALLBACK_STEP:
        if not any(p.status in ACTIVE for p in _current_pages(tx)):
            _exhausted(tx)
        return
    pages = _current_pages(tx)
    if any(p.status in ACTIVE for p in pages):
        return
    queued = [p for p in pages if p.status is PageStatus.QUEUED]
    if queued:
        tx.place(queued[0])  # sequential: the next person in this step
        return
    passed = any(p.status is PageStatus.PASSED for p in pages)
    if passed or escalation.step_waited:
        _next_step(tx)


def _next_step(tx: Tx) -> None:
    escalation = tx.inc.escalation
    assert escalation is not None
    policy = escalation.policy
    if escalation.step + 1 < len(policy.steps):
        _start_step(tx, escalation.step + 1)
    elif escalation.round < policy.repeat:
        escalation.round += 1
        _start_step(tx, 0)
    elif policy.fallback is not None:
        _fallback(tx, policy.fallback)
    else:
        _exhausted(tx)


def _fallback(tx: Tx, contact_id: str) -> None:
    escalation = tx.inc.escalation
    assert escalation is not None
    contact = tx.rules.oncall.contact(contact_id)
    escalation.step = FALLBACK_STEP
    if contact is None:
        tx.note("fallback missing", f"{contact_id} is no longer in the on-call config")
        _exhausted(tx)
        return
    page = Page(
        id="fallback",
        step=FALLBACK_STEP,
        round=escalation.round,
        contact=contact_from_config(contact),
        max_attempts=1,
        status=PageStatus.QUEUED,
        requested_at=tx.now,
    )
    tx.inc.pages.append(page)
    tx.note("fallback", f"nobody answered; calling {who(page.contact)}")
    tx.place(page)


def _exhausted(tx: Tx) -> None:
    escalation = tx.inc.escalation
    assert escalation is not None
    escalation.exhausted = True
    tx.inc.status = IncidentStatus.EXHAUSTED
    tx.observe("policy_exhausted")
    tx.note("policy exhausted", "nobody took the problem")
    tx.commands.append(
        ReportExhausted(
            id=f"exhausted:{tx.inc.key}",
            route=escalation.route,
            policy=escalation.policy.id,
            rounds=escalation.round + 1,
        )
    )
