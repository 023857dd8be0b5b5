"""Policy-driven escalation in `decide`: steps, waits, pass, repeat, fallback. Pure."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from yobidashi_common.events import (
    AlertEvent,
    AlertStatus,
    ContactRef,
    KeyAction,
    KeyPressed,
    Severity,
    Tag,
)
from yobidashi_dialer.core.decide import Rules, Transition, decide
from yobidashi_dialer.core.model import (
    AlertArrived,
    CallPlaced,
    CallProgress,
    CheckCall,
    EndCall,
    Event,
    Incident,
    IncidentStatus,
    KeyPress,
    PageStatus,
    PlaceCall,
    ReportExhausted,
    StartTimer,
    TimerFired,
)
from yobidashi_dialer.oncall import load_text

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)

CONFIG = """\
contacts:
  - {id: c1, name: One, phones: ["090-1000-0001"]}
  - {id: c2, name: Two, phones: ["090-1000-0002"]}
  - {id: c3, name: Three, phones: ["090-1000-0003"]}
  - {id: c4, name: Four, phones: ["090-1000-0004"]}
  - {id: c5, name: Five, phones: ["090-1000-0005", "080-1000-0005"]}
  - {id: boss, name: Boss, phones: ["090-1000-0009"]}
schedules:
  - id: week
    timezone: Asia/Tokyo
    layers:
      - rotation: {type: weekly, start: 2026-11-02T09:00, members: [c4, c5]}
policies:
  - id: five
    attempts: 2
    steps:
      - {targets: [{contact: c1}], wait: 2m}
      - {targets: [{contact: c2}], wait: 2m}
      - {targets: [{contact: c3}], wait: 2m}
      - {targets: [{contact: c4}], wait: 2m}
      - {targets: [{contact: c5}], wait: 2m}
  - id: team
    steps:
      - {targets: [{contact: c1}, {contact: c2}], order: parallel, wait: 1m}
      - {targets: [{contact: c3}, {schedule: week}], order: sequential, wait: 1m}
    repeat: 1
    fallback: boss
routes:
  - {id: db, match: {hosts: ["db*"]}, policy: five}
  - {id: rest, policy: team, bundle_window: 45s}
"""


def alert(status: AlertStatus = AlertStatus.PROBLEM, host: str = "db01", n: int = 1) -> AlertEvent:
    return AlertEvent(
        source_event_id="7",
        problem_key="zabbix:7",
        dedup_key=f"zabbix.7.{status.value}.{n}",
        status=status,
        severity=Severity.HIGH,
        title="Disk full",
        host=host,
        received_at=T0,
        started_at=T0 - timedelta(minutes=1),
        sendto="ignored-in-policy-mode",
    )


class Run:
    def __init__(self) -> None:
        self.rules = Rules(
            max_attempts=3, redial_pause=timedelta(seconds=30), oncall=load_text(CONFIG)
        )
        self.state: Incident | None = None
        self.now = T0
        self.calls: list[tuple[float, str]] = []  # (minutes since T0, contact id)
        self.sids = 0
        self.timers: list[StartTimer] = []
        self.last = Transition(None)

    def __call__(self, event: Event) -> Transition:
        t = decide(self.state, event, self.now, self.rules)
        self.state = t.state
        self.last = t
        for c in t.commands:
            if isinstance(c, PlaceCall):
                self.calls.append(((self.now - T0).total_seconds() / 60, c.contact.id))
            if isinstance(c, StartTimer):
                self.timers.append(c)
        return t

    @property
    def inc(self) -> Incident:
        assert self.state is not None
        return self.state

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def fire_due(self) -> None:
        """Fire every timer whose time has come, in order, as the timer consumer would."""
        for timer in sorted(self.timers, key=lambda t: t.due_at):
            if timer.due_at <= self.now and timer.token not in {"done:" + timer.token}:
                self.timers.remove(timer)
                self(TimerFired(token=timer.token, purpose=timer.purpose, page_id=timer.page_id,
                                attempt=timer.attempt))  # fmt: skip

    def ringing(self, contact: str) -> Any:
        pages = [
            p for p in self.inc.pages if p.contact.id == contact and p.status is PageStatus.DIALLING
        ]
        assert pages, f"{contact} is not being dialled"
        page = pages[-1]
        self.sids += 1
        sid = f"CA{self.sids}"
        self(CallPlaced(call_id=page.call_id or "", page_id=page.id, attempt=page.attempt,
                        call_sid=sid, at=self.now))  # fmt: skip
        return page

    def outcome(self, contact: str, status: str, answered_by: str | None = None) -> None:
        page = self.ringing(contact)
        if answered_by or status == "completed":
            self(CallProgress(call_id=page.call_id, call_sid=f"CA{self.sids}", status="in-progress",
                              answered_by=answered_by, at=self.now))  # fmt: skip
        self.wait(20)
        self(
            CallProgress(
                call_id=page.call_id, call_sid=f"CA{self.sids}", status=status, at=self.now
            )
        )

    def key(self, contact: str, digit: str, action: KeyAction) -> None:
        page = self.ringing(contact)
        self(CallProgress(call_id=page.call_id, call_sid=f"CA{self.sids}", status="in-progress",
                          answered_by="human", at=self.now))  # fmt: skip
        self(KeyPress(key=KeyPressed(
            id=f"k{self.sids}", call_id=page.call_id or "", call_sid=f"CA{self.sids}",
            problems=[self.inc.problem],
            contact=ContactRef(id=contact, name=contact, masked_number="x"),
            digit=digit, action=action, at=self.now,
        )))  # fmt: skip

    def run_until(self, minutes: float) -> None:
        while self.now < T0 + timedelta(minutes=minutes):
            self.wait(5)
            self.fire_due()


def test_the_five_step_scenario_calls_in_order_with_the_waits_and_stops_at_1() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    assert run.inc.escalation is not None
    assert run.inc.escalation.route == "db"
    # step 1: no answer, redialled once (attempts: 2), still no answer
    run.outcome("c1", "no-answer")
    run.run_until(1)
    run.outcome("c1", "no-answer")
    # the step's wait (2 min from its start) ends it
    run.run_until(2.1)
    run.outcome("c2", "busy")
    run.run_until(3.0)  # the redial, 30 s after the busy signal
    run.outcome("c2", "busy")
    run.run_until(4.1)
    run.outcome("c3", "completed", answered_by="machine_end_beep")
    run.run_until(6.1)
    run.key("c4", "2", KeyAction.PASS)  # passes at once: no waiting for step 4's wait
    passed_at = (run.now - T0).total_seconds() / 60
    run.key("c5", "1", KeyAction.ACKNOWLEDGE)
    assert [who for _, who in run.calls] == ["c1", "c1", "c2", "c2", "c3", "c4", "c5"]
    starts = {who: t for t, who in reversed(run.calls)}
    assert (starts["c2"], starts["c3"], starts["c4"]) == (2.0, 4.0, 6.0)
    assert starts["c5"] == passed_at < 8.0, "2 moved to the next step without waiting"
    assert run.inc.status is IncidentStatus.ACKNOWLEDGED
    calls_before = len(run.calls)
    run.run_until(30)
    assert len(run.calls) == calls_before, "nobody is called after the 1"


def fail_steps(run: Run, *contacts: str) -> None:
    """Each contact's call fails at once (no redial); then the step's wait runs out."""
    for contact in contacts:
        run.outcome(contact, "failed")
        run.run_until((run.now - T0).total_seconds() / 60 + 2.1)


def test_a_redial_uses_the_next_number_of_the_contact() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    fail_steps(run, "c1", "c2", "c3", "c4")
    first = run.ringing("c5")
    assert first.contact.number == "+819010000005"
    run(
        CallProgress(
            call_id=first.call_id, call_sid=f"CA{run.sids}", status="no-answer", at=run.now
        )
    )
    run.wait(31)
    run.fire_due()
    second = next(p for p in run.inc.pages if p.contact.id == "c5")
    assert second.attempt == 2
    assert second.contact.number == "+818010000005"


def test_a_call_still_live_when_its_step_is_over_is_checked_at_twilio_then_the_step_moves_on() -> (
    None
):
    """Its final status callback was lost (no dialer was up to take it; Twilio does not send it
    again): the step's end asks Twilio, and the answer, not the watchdog minutes later, moves on."""
    run = Run()
    run.rules = dataclasses.replace(run.rules, watchdog_after=timedelta(minutes=10))
    run(AlertArrived(alert=alert()))
    page = run.ringing("c1")  # placed, and then nothing more is heard of it
    run.wait(119)
    run.fire_due()
    assert not any(isinstance(c, CheckCall) for c in run.last.commands), "not before the wait"
    run.wait(1)
    run.fire_due()
    [check] = [c for c in run.last.commands if isinstance(c, CheckCall)]
    assert (check.call_sid, check.page_id, check.reason) == ("CA1", page.id, "step_over")
    assert [who for _, who in run.calls] == ["c1"], "step 2 waits for the answer"
    run(CallProgress(call_id=page.call_id, call_sid="CA1", status="failed", at=run.now))
    assert [who for _, who in run.calls] == ["c1", "c2"]
    run.wait(20)
    run.outcome("c2", "failed")
    run.run_until(4.5)
    assert [who for _, who in run.calls] == ["c1", "c2", "c3"]
    assert not any(isinstance(c, CheckCall) for c in run.last.commands), "c2 had ended: no check"


def test_recovery_during_step_2_ends_everything() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.outcome("c1", "no-answer")
    run.run_until(1)
    run.outcome("c1", "no-answer")
    run.run_until(2.1)
    page = run.ringing("c2")
    t = run(AlertArrived(alert=alert(AlertStatus.RESOLVED)))
    assert [c.call_sid for c in t.commands if isinstance(c, EndCall)] == [f"CA{run.sids}"]
    assert page.id in {p.id for p in run.inc.pages if p.status is PageStatus.CANCELLED}
    before = len(run.calls)
    run.run_until(30)
    assert len(run.calls) == before


def test_duplicate_zabbix_notifications_do_not_restart_the_policy() -> None:
    run = Run()
    run(AlertArrived(alert=alert(n=1)))
    t = run(AlertArrived(alert=alert(n=2)))
    assert t.commands == []
    assert ("suppressed_duplicate", "", 1.0) in t.observations
    assert len(run.calls) == 1


def test_parallel_then_sequential_with_a_schedule_then_repeat_then_fallback() -> None:
    run = Run()
    run(AlertArrived(alert=alert(host="web01")))
    assert run.inc.escalation is not None
    assert run.inc.escalation.bundle_window == 45
    assert sorted(who for _, who in run.calls) == ["c1", "c2"]  # parallel
    run.outcome("c1", "failed")
    run.outcome("c2", "failed")
    run.run_until(1.1)
    assert [who for _, who in run.calls][2:] == ["c3"]  # sequential: c3 first
    run.outcome("c3", "failed")
    # then whoever the schedule has on call (the week of 11-23: c4 or c5)
    on_call_now = run.calls[-1][1]
    assert on_call_now in {"c4", "c5"}
    run.outcome(on_call_now, "failed")
    run.run_until(2.2)  # repeat: round 2 starts with step 1 again
    assert sorted(who for _, who in run.calls[-2:]) == ["c1", "c2"]
    for who in ("c1", "c2"):
        run.outcome(who, "failed")
    run.run_until(3.3)
    run.outcome("c3", "failed")
    run.outcome(on_call_now, "failed")
    run.run_until(4.4)
    assert run.calls[-1][1] == "boss"
    run.outcome("boss", "no-answer")
    [exhausted] = [c for c in run.last.commands if isinstance(c, ReportExhausted)]
    assert exhausted.rounds == 2
    assert run.inc.status is IncidentStatus.EXHAUSTED
    assert ("policy_exhausted", "", 1.0) in run.last.observations


def test_an_ack_still_counts_after_the_policy_ran_out() -> None:
    run = Run()
    run(AlertArrived(alert=alert(host="web01")))
    for step_2_at, round_over_at in ((1.1, 2.2), (3.3, 4.4)):  # both rounds: nobody answers
        run.outcome("c1", "failed")
        run.outcome("c2", "failed")
        run.run_until(step_2_at)
        run.outcome("c3", "failed")
        run.outcome(run.calls[-1][1], "failed")
        run.run_until(round_over_at)
    run.outcome("boss", "no-answer")
    assert run.inc.status is IncidentStatus.EXHAUSTED
    # the boss calls back later and presses 1 on that call: it still acknowledges
    page = next(p for p in run.inc.pages if p.contact.id == "boss")
    run(KeyPress(key=KeyPressed(
        id="late", call_id=page.call_id or "", call_sid="CA-late", problems=[run.inc.problem],
        contact=ContactRef(id="boss", name="Boss", masked_number="x"), digit="1",
        action=KeyAction.ACKNOWLEDGE, at=run.now,
    )))  # fmt: skip
    assert run.inc.status.value == "acknowledged"


def test_a_running_escalation_keeps_its_policy_when_the_config_changes() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    changed = CONFIG.replace(
        "{targets: [{contact: c2}], wait: 2m}", "{targets: [{contact: c4}], wait: 2m}"
    )
    run.rules = Rules(oncall=load_text(changed))
    run.outcome("c1", "failed")
    run.run_until(2.1)
    assert run.calls[-1][1] == "c2", "steps come from the policy as it was when it started"


def test_time_to_acknowledge_is_observed_from_the_problem_start() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    run.wait(30)
    run.key("c1", "1", KeyAction.ACKNOWLEDGE)
    assert ("time_to_acknowledge", "", 90.0) in run.last.observations


def test_the_state_survives_a_round_trip_through_json() -> None:
    run = Run()
    run(AlertArrived(alert=alert()))
    stored = Incident.model_validate_json(run.inc.model_dump_json())
    assert stored == run.inc
    assert stored.escalation is not None
    assert stored.escalation.policy.steps[0].wait == timedelta(minutes=2)


def test_the_heartbeat_canary_rings_its_own_number_whatever_the_routes() -> None:
    run = Run()
    canary = alert(host="yobidashi-heartbeat").model_copy(
        update={"sendto": "+819099990000", "tags": [Tag(tag="yobidashi", value="heartbeat")]}
    )
    t = run(AlertArrived(alert=canary))
    assert run.inc.escalation is None
    assert [c.contact.number for c in t.commands if isinstance(c, PlaceCall)] == ["+819099990000"]


def test_no_route_falls_back_to_zabbix_driven_mode() -> None:
    run = Run()
    run.rules = Rules(oncall=load_text(CONFIG.split("routes:")[0]))
    t = run(AlertArrived(alert=alert().model_copy(update={"sendto": "090-1234-5678"})))
    assert run.inc.escalation is None
    assert [c.contact.number for c in t.commands if isinstance(c, PlaceCall)] == ["+819012345678"]
