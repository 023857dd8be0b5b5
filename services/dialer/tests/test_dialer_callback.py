"""Call-backs, the pure part: who a caller is, what we remember, what they hear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from yobidashi_common.events import AlertStatus, ProblemRef
from yobidashi_common.identity import ContactId
from yobidashi_common.phone import E164
from yobidashi_dialer.callback import (
    PagedProblems,
    caller_identity,
    locked,
    open_problems,
    remembered,
)
from yobidashi_dialer.core.decide import Rules
from yobidashi_dialer.core.model import Contact, Incident, IncidentStatus
from yobidashi_dialer.oncall import load_text
from yobidashi_dialer.store import CallRecord, CallTarget
from yobidashi_testing.stack import alert_event

NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
RULES = Rules(
    oncall=load_text("contacts:\n  - {id: tanaka, name: 田中, phones: ['090-4444-0001']}\n")
)
TANAKA = Contact(id=ContactId("tanaka"), name="田中", number=E164("+819044440001"))


def record(*keys: str) -> CallRecord:
    return CallRecord(
        call_id="c1",
        targets=[CallTarget(problem_key=k, page_id="r0s0t0", attempt=1) for k in keys],
        problems=[ProblemRef(problem_key=k, source_event_id=k.split(":")[1]) for k in keys],
        contact=TANAKA,
        from_number="+14155550100",
        spoken=[],
        state="placing",
        placing_since=NOW,
    )


def incident(event_id: int, started_ago: float, status: IncidentStatus) -> Incident:
    found = Incident.from_alert(
        alert_event(event_id, sendto=None, started_ago=started_ago, status=AlertStatus.PROBLEM),
        NOW,
    )
    found.started_at = NOW - timedelta(seconds=started_ago)
    found.status = status
    return found


def test_a_caller_is_known_by_the_full_number_as_a_page_knows_them() -> None:
    assert caller_identity("+819044440001", RULES) == ("+819044440001", "tanaka")
    # Someone only Zabbix knows: the full number, never a masked form.
    assert caller_identity("+819055550002", RULES) == (
        "+819055550002",
        ContactId("tel:+819055550002"),
    )
    for withheld in ("", "anonymous", "+266696687", "+81 90-****-0001"):
        assert caller_identity(withheld, RULES) is None


def test_remembered_adds_the_calls_problems_and_forgets_the_old_ones() -> None:
    first = remembered(None, record("zabbix:1", "zabbix:2"), NOW, timedelta(hours=1))
    assert [e.problem_key for e in first.entries] == ["zabbix:1", "zabbix:2"]
    later = NOW + timedelta(minutes=90)
    second = remembered(first, record("zabbix:3"), later, timedelta(hours=1))
    assert [e.problem_key for e in second.entries] == ["zabbix:3"]
    again = remembered(second, record("zabbix:3"), later, timedelta(hours=1))
    assert len(again.entries) == 1  # a redial of the same problem is one entry


def test_open_problems_are_the_windows_unacknowledged_ones_newest_first() -> None:
    paged = remembered(
        None, record("zabbix:1", "zabbix:2", "zabbix:3", "zabbix:4"), NOW, timedelta(hours=2)
    )
    old = PagedProblems(
        contact=TANAKA,
        entries=[
            *paged.entries,
            *remembered(
                None, record("zabbix:5"), NOW - timedelta(hours=2), timedelta(hours=3)
            ).entries,
        ],
    )
    incidents = {
        "zabbix:1": incident(1, 600, IncidentStatus.OPEN),
        "zabbix:2": incident(2, 60, IncidentStatus.OPEN),
        "zabbix:3": incident(3, 300, IncidentStatus.ACKNOWLEDGED),
        "zabbix:4": incident(4, 30, IncidentStatus.RESOLVED),
        "zabbix:5": incident(5, 30, IncidentStatus.OPEN),  # paged before the window
    }
    found = open_problems(old, incidents, NOW, timedelta(hours=1))
    assert [i.key for i in found] == ["zabbix:2", "zabbix:1"]
    assert open_problems(None, incidents, NOW, timedelta(hours=1)) == []


def test_five_wrong_pins_in_the_window_lock_the_call_back_and_they_age_out() -> None:
    state = remembered(None, record("zabbix:1"), NOW, timedelta(hours=1))
    window = timedelta(hours=1)
    wrong = state.model_copy(update={"wrong_pins": [NOW - timedelta(minutes=m) for m in range(4)]})
    assert not locked(wrong, NOW, window)
    five = wrong.model_copy(update={"wrong_pins": [*wrong.wrong_pins, NOW]})
    assert locked(five, NOW, window)
    assert not locked(five, NOW + timedelta(hours=2), window)
    # A new page keeps the recent wrong PINs: paging again does not unlock.
    assert locked(remembered(five, record("zabbix:2"), NOW, window), NOW, window)
