"""Holiday duty (休日当番): layers that apply only on public holidays, or never on them.

Checked across a real stretch of the calendar: Golden Week 2027 (4/29 Thu, 5/3 to 5/5 Mon to
Wed), the substitute holiday of 2027-03-22 (春分の日 fell on a Sunday), a company's own extra
days, and hand-offs at midnight on a holiday's eve and at its end.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from yobidashi_dialer.oncall import ConfigError, load_text
from yobidashi_dialer.oncall.schedule import next_change, who_is_on_call
from yobidashi_dialer.views import oncall_view
from yobidashi_testing.oncall_yaml import THREE_CONTACTS

TOKYO = ZoneInfo("Asia/Tokyo")
CONFIG = (
    THREE_CONTACTS
    + """\
schedules:
  - id: primary
    timezone: Asia/Tokyo
    layers:
      - name: 平日当番
        rotation: {type: weekly, start: 2027-01-04T09:00, members: [tanaka, sato]}
        holidays: JP
        on_holidays: never
      - name: 休日当番
        rotation: {type: daily, start: 2027-01-01T00:00, members: [suzuki]}
        holidays: JP
        extra_holidays: [2027-12-29, 2027-12-30]
        on_holidays: only
"""
)
SCHEDULE = load_text(CONFIG).schedules[0]


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TOKYO)


def on_duty(text: str) -> tuple[str, str]:
    found = who_is_on_call(SCHEDULE, local(text))
    assert found is not None
    return found.contact, found.because(SCHEDULE)


HOLIDAY = ("suzuki", "holiday layer 休日当番")


def test_golden_week_2027_day_by_day() -> None:
    days = [f"2027-04-{d:02d}" for d in range(27, 31)] + [f"2027-05-{d:02d}" for d in range(1, 8)]
    holidays_seen = [day for day in days if on_duty(f"{day}T12:00") == HOLIDAY]
    assert holidays_seen == ["2027-04-29", "2027-05-03", "2027-05-04", "2027-05-05"]
    for day in set(days) - set(holidays_seen):
        contact, because = on_duty(f"{day}T12:00")
        assert contact in ("tanaka", "sato")
        assert because == "rotation 平日当番"


def test_a_substitute_holiday_and_the_sunday_it_replaces() -> None:
    assert on_duty("2027-03-21T12:00") == HOLIDAY  # 春分の日, a Sunday
    assert on_duty("2027-03-22T12:00") == HOLIDAY  # 振替休日
    assert on_duty("2027-03-23T12:00")[1] == "rotation 平日当番"


def test_the_yaml_adds_days_of_its_own() -> None:
    assert on_duty("2027-12-29T03:00") == HOLIDAY
    assert on_duty("2027-12-28T03:00")[1] == "rotation 平日当番"


def test_hand_offs_at_midnight_on_a_holidays_eve_and_at_its_end() -> None:
    assert on_duty("2027-05-02T23:59:59")[1] == "rotation 平日当番"
    assert on_duty("2027-05-03T00:00") == HOLIDAY
    assert on_duty("2027-05-05T23:59:59") == HOLIDAY
    assert on_duty("2027-05-06T00:00")[1] == "rotation 平日当番"
    assert next_change(SCHEDULE, local("2027-05-02T21:30")) == local("2027-05-03T00:00")
    assert next_change(SCHEDULE, local("2027-05-05T21:30")) == local("2027-05-06T00:00")


def test_oncall_now_says_a_holiday_layer_is_why() -> None:
    view = oncall_view(load_text(CONFIG), local("2027-05-04T10:00"))
    [primary] = view["schedules"]
    assert primary["on_call"]["name"] == "鈴木"
    assert primary["on_call"]["because"] == "holiday layer 休日当番"
    assert datetime.fromisoformat(primary["until"]) == local("2027-05-06T00:00")


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("holidays: XX\n        on_holidays: only", "no public holidays known for 'XX'"),
        ("on_holidays: only", "on_holidays needs holidays"),
        ("holidays: JP", "say on_holidays: only or never"),
        ("holidays: JP\n        on_holidays: sometimes", "on_holidays"),
    ],
)
def test_a_wrong_holiday_rule_is_refused_by_line_and_field(layer: str, message: str) -> None:
    text = f"""\
contacts:
  - {{id: suzuki, name: 鈴木, phones: ["+819011110003"]}}
schedules:
  - id: primary
    layers:
      - rotation: {{type: daily, start: 2027-01-01T00:00, members: [suzuki]}}
        {layer}
"""
    with pytest.raises(ConfigError) as caught:
        load_text(text)
    [problem] = [str(p) for p in caught.value.problems]
    assert re.match(r"line [678]: schedules\.0\.layers\.0", problem), problem
    assert message in problem


def test_the_day_is_the_schedules_local_date() -> None:
    """4/29 in Tokyo starts at 15:00 UTC on 4/28."""
    utc_eve = datetime(2027, 4, 28, 15, 0, tzinfo=ZoneInfo("UTC"))
    found = who_is_on_call(SCHEDULE, utc_eve)
    assert found is not None
    assert found.contact == "suzuki"
    before = who_is_on_call(SCHEDULE, utc_eve - timedelta(seconds=1))
    assert before is not None
    assert before.contact != "suzuki"
