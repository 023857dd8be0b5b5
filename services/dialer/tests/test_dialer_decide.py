"""The dialer's decisions, pure: no NATS, no Twilio, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from yobidashi_common.events import (
    AckOutcome,
    AckResult,
    AlertEvent,
    AlertStatus,
    AlertUpdate,
    ContactRef,
    KeyAction,
    KeyPressed,
    ProblemRef,
    Severity,
    UpdateAction,
)
from yobidashi_dialer.core.decide import Rules, Transition, decide
from yobidashi_dialer.core.model import (
    AckReported,
    AlertArrived,
    CallNotPlaced,
    CallPlaced,
    CallProgress,
    CheckCall,
    Contact,
    EndCall,
    Event,
    Incident,
    IncidentStatus,
    KeyPress,
    LeaveVoicemail,
    Page,
    PageStatus,
    PlaceCall,
    StartTimer,
    TimerFired,
)
from yobidashi_dialer.core.tx import call_id_for

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
RULES = Rules(max_attempts=3, redial_pause=timedelta(seconds=60))


def alert(status: AlertStatus = AlertStatus.PROBLEM, **kw: Any) -> AlertEvent:
    fields: dict[str, Any] = {
        "source_event_id": "17",
        "problem_key": "zabbix:17",
        "dedup_key": f"zabbix.17.{status.value}.{kw.pop('n', 1)}",
        "status": status,
        "severity": Severity.HIGH,
        "title": "web01: HTTP down",
        "host": "web01",
        "received_at": T0,
        "started_at": T0 - timedelta(minutes=3),
        "sendto": "090-1234-5678",
    }
    fields.update(kw)
    return AlertEvent(**fields)


def updated(n: int, *actions: UpdateAction, user: str = "a", **update: Any) -> AlertArrived:
    """Zabbix's ``n``-th notification about problem 17: an update, ``actions`` by ``user``."""
    change = AlertUpdate(actions=list(actions), user=user, **update)
    return AlertArrived(alert=alert(AlertStatus.UPDATED, n=n, update=change))


class Run:
    """Feed events in order, as the shell would, and keep what came out."""

    def __init__(self, rules: Rules = RULES) -> None:
        self.state: Incident | None = None
        self.rules = rules
        self.now = T0
        self.last = Transition(None)

    def __call__(self, event: Event, after: float = 0) -> Transition:
        self.now += timedelta(seconds=after)
        self.last = decide(self.state, event, self.now, self.rules)
        self.state = self.last.state
        return self.last

    @property
    def inc(self) -> Incident:
        assert self.state is not None
        return self.state

    def calling(self, page: str) -> tuple[Page, str]:
        """The page and the call it is on now, which every call event names."""
        p = self.inc.page(page)
        assert p is not None
        assert p.call_id is not None
        return p, p.call_id

    def placed(self, page: str = "z1", sid: str = "CA1") -> Transition:
        p, call_id = self.calling(page)
        return self(
            CallPlaced(call_id=call_id, page_id=page, attempt=p.attempt, call_sid=sid, at=self.now)
        )

    def progress(
        self, status: str, page: str = "z1", answered_by: str | None = None, after: float = 1
    ) -> Transition:
        p, call_id = self.calling(page)
        return self(
            CallProgress(
                call_id=call_id,
                call_sid=p.call_sid or "CA?",
                status=status,
                answered_by=answered_by,
                sequence=len(self.inc.timeline),
                at=self.now + timedelta(seconds=after),
            ),
            after=after,
        )

    def key(
        self, digit: str, action: KeyAction, page: str = "z1", name: str = "山田"
    ) -> Transition:
        p, call_id = self.calling(page)
        return self(
            KeyPress(
                key=KeyPressed(
                    id=f"k-{call_id}-{digit}",
                    call_id=call_id,
                    call_sid=p.call_sid or "CA?",
                    problems=[self.inc.problem],
                    contact=ContactRef(id="c1", name=name, masked_number="+81 90-****-5678"),
                    digit=digit,
                    action=action,
                    at=self.now,
                )
            )
        )


def commands(t: Transition, kind: type) -> list[Any]:
    return [c for c in t.commands if isinstance(c, kind)]


def test_problem_with_sendto_rings_the_normalised_number() -> None:
    run = Run()
    t = run(AlertArrived(alert=alert()))
    [place] = commands(t, PlaceCall)
    assert place.contact.number == "+819012345678"
    assert place.attempt == 1
    assert place.call_id == call_id_for("zabbix:17", "z1", 1)
    assert run.inc.status is IncidentStatus.OPEN
    assert run.inc.pages[0].status is PageStatus.DIALLING


def test_invalid_number_is_counted_and_never_dialled() -> None:
    run = Run()
    t = run(AlertArrived(alert=alert(sendto="+1 555-555-0100")))
    assert commands(t, PlaceCall) == []
    assert ("dial_error", "invalid_number", 1.0) in t.observations
    entry = run.inc.timeline[-1]
    assert entry.what == "not calling"
    assert "invalid phone number" in entry.detail
    assert "555-0100" not in entry.detail  # masked even in the timeline


def test_missing_sendto_does_not_call() -> None:
    run = Run()
    assert commands(run(AlertArrived(alert=alert(sendto=None))), PlaceCall) == []


def test_a_second_notification_for_a_number_already_being_called_is_not_a_second_call() -> None:
    run = Run()
    run(AlertArrived(alert=alert(n=1)))
    t = run(AlertArrived(alert=alert(n=2, sendto="+819012345678")))
    assert commands(t, PlaceCall) == []
    assert len(run.inc.pages) == 1


def test_another_recipient_is_called_too() -> None:
    run = Run()
    run(AlertArrived(alert=alert(n=1)))
    t = run(AlertArrived(alert=alert(n=2, sendto="+14155552671")))
    [place] = commands(t, PlaceCall)
    assert place.contact.number == "+14155552671"
    assert place.page_id == "z2"


def test_placed_then_answered_then_ack_key_stops_everything_else() -> None:
    run = Run()
    run(AlertArrived(alert=alert(n=1)))
    run(AlertArrived(alert=alert(n=2, sendto="+14155552671")))
    t = run.placed("z1", "CA1")
    assert run.inc.page("z1").status is PageStatus.RINGING  # type: ignore[union-attr]
    assert [c.purpose for c in commands(t, StartTimer)] == ["watchdog"]
    run.placed("z2", "CA2")
    t = run.progress("in-progress", "z1", answered_by="human", after=4)
    assert ("time_to_answer", "", 4.0) in t.observations
    t = run.key("1", KeyAction.ACKNOWLEDGE, "z1")
    assert run.inc.status is IncidentStatus.ACKNOWLEDGED
    assert run.inc.acked_by == "山田"
    assert run.inc.acked_via == "phone"
    # the other ringing call is ended; the call where 1 was pressed finishes its confirmation
    assert [c.call_sid for c in commands(t, EndCall)] == ["CA2"]
    assert run.inc.page("z1").status is PageStatus.ACKNOWLEDGED  # type: ignore[union-attr]
    assert run.inc.page("z2").status is PageStatus.CANCELLED  # type: ignore[union-attr]


def test_no_answer_is_redialled_then_the_step_ends_unreached() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    for attempt in (1, 2):
        run.placed(sid=f"CA{attempt}")
        t = run.progress("no-answer", after=30)
        [timer] = commands(t, StartTimer)
        assert timer.purpose == "redial"
        assert timer.due_at == run.now + timedelta(seconds=60)
        assert run.inc.page("z1").status is PageStatus.WAITING  # type: ignore[union-attr]
        assert ("call", "no_answer", 1.0) in t.observations
        t = run(
            TimerFired(token=timer.token, purpose="redial", page_id="z1", attempt=attempt), after=60
        )
        [place] = commands(t, PlaceCall)
        assert place.attempt == attempt + 1
    run.placed(sid="CA3")
    t = run.progress("no-answer", after=30)
    assert commands(t, StartTimer) == []
    page = run.inc.page("z1")
    assert page is not None
    assert page.status is PageStatus.UNREACHED
    assert page.attempt == 3


def test_busy_is_redialled_like_no_answer() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    t = run.progress("busy")
    assert [c.purpose for c in commands(t, StartTimer)] == ["redial"]


def test_a_replayed_redial_timer_does_not_dial_twice() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    [timer] = commands(run.progress("no-answer"), StartTimer)
    fired = TimerFired(token=timer.token, purpose="redial", page_id="z1", attempt=1)
    assert len(commands(run(fired), PlaceCall)) == 1
    assert commands(run(fired), PlaceCall) == []  # the page moved on to attempt 2


def test_machine_leaves_a_voicemail_and_is_unreached_without_redial() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    run.progress("in-progress")
    t = run.progress("in-progress", answered_by="machine_end_beep")
    [vm] = commands(t, LeaveVoicemail)
    assert vm.call_sid == "CA1"
    t = run.progress("completed", after=10)
    assert ("call", "machine", 1.0) in t.observations
    assert commands(t, StartTimer) == []
    assert run.inc.page("z1").status is PageStatus.UNREACHED  # type: ignore[union-attr]
    assert run.inc.page("z1").outcome == "voicemail"  # type: ignore[union-attr]


def test_recovery_while_ringing_ends_the_call() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    t = run(AlertArrived(alert=alert(AlertStatus.RESOLVED)))
    assert [c.call_sid for c in commands(t, EndCall)] == ["CA1"]
    assert run.inc.status is IncidentStatus.RESOLVED
    t = run.progress("canceled")
    assert ("call", "canceled", 1.0) in t.observations
    assert run.inc.page("z1").status is PageStatus.CANCELLED  # type: ignore[union-attr]


def test_recovery_while_waiting_to_redial_cancels_the_redial() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    [timer] = commands(run.progress("no-answer"), StartTimer)
    t = run(AlertArrived(alert=alert(AlertStatus.RESOLVED)))
    assert commands(t, EndCall) == []
    t = run(TimerFired(token=timer.token, purpose="redial", page_id="z1", attempt=1))
    assert commands(t, PlaceCall) == []


def test_a_status_callback_that_overtakes_the_placed_report_is_fine() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    _, call_id = run.calling("z1")
    run(CallProgress(call_id=call_id, call_sid="CA1", status="initiated", at=T0))
    run(CallProgress(call_id=call_id, call_sid="CA1", status="ringing", at=T0))
    t = run(CallPlaced(call_id=call_id, page_id="z1", attempt=1, call_sid="CA1", at=T0))
    assert commands(t, EndCall) == []
    assert [c.purpose for c in commands(t, StartTimer)] == ["watchdog"]
    assert run.inc.page("z1").status is PageStatus.RINGING  # type: ignore[union-attr]


def test_call_placed_after_a_stop_is_hung_up_at_once() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run(AlertArrived(alert=alert(AlertStatus.RESOLVED)))
    _, call_id = run.calling("z1")
    t = run(CallPlaced(call_id=call_id, page_id="z1", attempt=1, call_sid="CA9", at=T0))
    assert [c.call_sid for c in commands(t, EndCall)] == ["CA9"]


def test_ack_in_the_zabbix_ui_stops_calling_but_our_own_ack_echo_is_not_news() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    ours = updated(5, UpdateAction.ACKNOWLEDGED, user="Yobidashi", from_yobidashi=True)
    t = run(ours)
    assert commands(t, EndCall) == []
    assert run.inc.status.value == "open"
    ui = updated(6, UpdateAction.ACKNOWLEDGED, user="Sato (sato)")
    t = run(ui)
    assert [c.call_sid for c in commands(t, EndCall)] == ["CA1"]
    assert run.inc.status is IncidentStatus.ACKNOWLEDGED
    assert run.inc.acked_by == "Sato (sato)"
    assert run.inc.acked_via == "zabbix"


def test_unack_in_zabbix_reopens_so_the_next_zabbix_step_can_page_again() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run(updated(2, UpdateAction.ACKNOWLEDGED))
    run(updated(3, UpdateAction.UNACKNOWLEDGED))
    assert run.inc.status.value == "open"
    t = run(AlertArrived(alert=alert(n=4, sendto="+14155552671")))
    assert len(commands(t, PlaceCall)) == 1


def test_severity_change_and_comment_are_recorded() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run(
        updated(
            2,
            UpdateAction.COMMENTED,
            UpdateAction.SEVERITY_CHANGED,
            message="確認中",
            new_severity=Severity.DISASTER,
        )
    )
    assert run.inc.severity is Severity.DISASTER
    assert [e.what for e in run.inc.timeline[-2:]] == ["severity changed", "comment in Zabbix"]


def test_close_in_zabbix_resolves() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    t = run(updated(2, UpdateAction.CLOSED))
    assert run.inc.status is IncidentStatus.RESOLVED
    assert len(commands(t, EndCall)) == 1


def test_a_problem_after_its_recovery_does_not_call() -> None:
    run = Run()
    run(AlertArrived(alert=alert(AlertStatus.RESOLVED)))
    t = run(AlertArrived(alert=alert()))
    assert commands(t, PlaceCall) == []
    assert run.inc.status is IncidentStatus.RESOLVED


def test_notification_that_zabbix_already_considers_acknowledged_does_not_call() -> None:
    run = Run()
    t = run(AlertArrived(alert=alert(acknowledged=True)))
    assert commands(t, PlaceCall) == []
    assert run.inc.status is IncidentStatus.ACKNOWLEDGED


def test_pass_marks_the_page_and_calls_nobody_in_zabbix_mode() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    run.progress("in-progress", answered_by="human")
    t = run.key("2", KeyAction.PASS)
    assert t.commands == []
    assert run.inc.page("z1").status is PageStatus.PASSED  # type: ignore[union-attr]
    assert run.inc.status is IncidentStatus.OPEN


def test_a_second_ack_key_changes_nothing() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    run.key("1", KeyAction.ACKNOWLEDGE)
    acked_at = run.inc.acked_at
    t = run.key("1", KeyAction.ACKNOWLEDGE, name="other")
    assert t.commands == []
    assert run.inc.acked_by == "山田"
    assert run.inc.acked_at == acked_at


def test_answered_then_hung_up_without_a_key_is_reached_not_acknowledged() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    run.progress("in-progress", answered_by="human")
    t = run.progress("completed", after=20)
    assert ("call", "answered", 1.0) in t.observations
    assert run.inc.page("z1").status is PageStatus.REACHED  # type: ignore[union-attr]
    assert run.inc.status is IncidentStatus.OPEN


def test_failed_placement_is_unreached() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    _, call_id = run.calling("z1")
    run(CallNotPlaced(call_id=call_id, page_id="z1", attempt=1, reason="Twilio 21211"))
    assert run.inc.page("z1").status is PageStatus.UNREACHED  # type: ignore[union-attr]


def test_watchdog_asks_twilio_while_the_call_seems_alive_and_stops_after() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    [watch] = commands(run.placed(), StartTimer)
    t = run(TimerFired(token=watch.token, purpose="watchdog", page_id="z1", attempt=1), after=90)
    [check] = commands(t, CheckCall)
    assert check.call_sid == "CA1"
    [again] = commands(t, StartTimer)
    run.progress("completed")
    t = run(TimerFired(token=again.token, purpose="watchdog", page_id="z1", attempt=1), after=60)
    assert t.commands == []


def test_out_of_order_ringing_after_completed_changes_nothing() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.placed()
    run.progress("no-answer")
    status = run.inc.page("z1").status  # type: ignore[union-attr]
    t = run.progress("ringing")
    assert t.commands == []
    assert run.inc.page("z1").status is status  # type: ignore[union-attr]


def test_events_for_unknown_problems_do_nothing() -> None:
    t = decide(
        None, CallPlaced(call_id="x", page_id="z1", attempt=1, call_sid="CA", at=T0), T0, RULES
    )
    assert t.state is None
    assert t.commands == []


def test_ack_results_are_recorded_on_the_timeline() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    result = AckResult(
        keypress_id="k",
        problem=ProblemRef(problem_key="zabbix:17", source_event_id="17"),
        contact=ContactRef(id="c", masked_number="+81 90-****-5678"),
        outcome=AckOutcome.ACKNOWLEDGED,
        action=6,
        zabbix_user="yobidashi-acker",
        pressed_at=T0,
        at=T0,
    )
    run(AckReported(result=result))
    assert run.inc.timeline[-1].what == "Zabbix acknowledged"


def test_directory_gives_known_contacts_their_name_and_language() -> None:
    known = Contact(id="tanaka", name="田中", number="+819012345678", language="en", timezone="UTC")
    run = Run(Rules(directory=lambda n: known if n == known.number else None))
    [place] = commands(run(AlertArrived(alert=alert())), PlaceCall)
    assert place.contact == known


def test_decide_does_not_mutate_its_input() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    before = run.inc.model_dump()
    decide(run.inc, AlertArrived(alert=alert(AlertStatus.RESOLVED)), T0, RULES)
    assert run.inc.model_dump() == before
