"""On-call data: validation with line numbers, who is on call at T, and routing. Pure."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from yobidashi_common.events import AlertEvent, AlertStatus, Severity, Tag
from yobidashi_common.phone import E164
from yobidashi_dialer.oncall import ConfigError, load_text, on_call, route_for
from yobidashi_dialer.oncall.config import OnCallConfig, Schedule
from yobidashi_dialer.oncall.schedule import next_change

NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")

EXAMPLE = """\
contacts:
  - id: tanaka
    name: 田中太郎
    phones: ["090-1111-2222"]
  - id: sato
    name: 佐藤花子
    phones: ["+819033334444"]
    language: en
  - id: suzuki
    name: 鈴木一郎
    phones: ["080-5555-6666"]
schedules:
  - id: primary
    timezone: Asia/Tokyo
    layers:
      - rotation:
          type: weekly
          start: 2026-11-02T09:00
          members: [tanaka, suzuki]
    overrides:
      - contact: sato
        replaces: tanaka
        start: 2026-11-06T18:00
        end: 2026-11-09T09:00
policies:
  - id: default
    steps:
      - targets: [{schedule: primary}]
        wait: 5m
      - targets: [{contact: sato}, {contact: suzuki}]
        order: sequential
        wait: 10m
    repeat: 1
    fallback: sato
routes:
  - id: databases
    match: {host_groups: ["DB*"], severity: high}
    policy: default
  - id: everything
    policy: default
"""


def config(text: str = EXAMPLE) -> OnCallConfig:
    return load_text(text, "oncall.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(textwrap.dedent(text), "oncall.yaml")
    return [str(p) for p in caught.value.problems]


def test_the_example_loads_and_numbers_become_e164() -> None:
    c = config()
    tanaka = c.contact("tanaka")
    assert tanaka is not None
    assert tanaka.phones == ["+819011112222"]
    assert c.policy("default") is not None
    assert c.contact_by_number(E164("+819033334444")) == c.contact("sato")


def test_errors_name_the_line_and_the_field() -> None:
    found = problems(
        """\
        contacts:
          - id: tanaka
            name: 田中
            phones: ["123"]
          - id: tanaka
            name: 別の田中
            phones: ["090-1111-2222"]
            language: fr
        """
    )
    assert found == [
        "line 4: contacts.0.phones: invalid phone number *23 (region JP)",
        "line 8: contacts.1.language: Input should be 'ja' or 'en'",
    ]


def test_unknown_references_and_duplicate_ids_are_reported_by_line() -> None:
    found = problems(
        """\
        contacts:
          - {id: a, name: A, phones: ["090-1111-2222"]}
          - {id: a, name: B, phones: ["090-1111-3333"]}
        policies:
          - id: p
            steps:
              - targets: [{contact: nobody}, {schedule: nosched}]
        routes:
          - id: r
            policy: missing
        """
    )
    assert found == [
        "line 3: contacts.1.id: 'a' is used twice",
        "line 7: policies.0.steps.0.targets.0.contact: unknown contact 'nobody'",
        "line 7: policies.0.steps.0.targets.1.schedule: unknown schedule 'nosched'",
        "line 10: routes.0.policy: unknown policy 'missing'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("contacts: [", "line 1"),
        ("- just a list", "the file must be a mapping at the top"),
        (
            "routes:\n  - id: r\n    policy: p\n    match: {problem: '('}",
            "not a regular expression",
        ),
        (
            "schedules:\n  - id: s\n    layers:\n      - rotation: "
            "{type: custom, start: 2026-01-01, members: [a]}",
            "a custom rotation needs a positive length",
        ),
        (
            "contacts:\n  - {id: a, name: A, phones: ['090-1111-2222'], timezone: Mars/Base}",
            "unknown timezone",
        ),
        (
            "policies:\n  - id: p\n    steps:\n      - targets: [{}]",
            "a target is either a contact or a schedule",
        ),
    ],
)
def test_each_kind_of_mistake_is_explained(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_an_empty_file_is_an_empty_config() -> None:
    assert load_text("", "x") == OnCallConfig()


# -- schedules ------------------------------------------------------------------------------------


# Two people in the US, a and b: the schedules below rotate between them.
US_PAIR = """\
- {id: a, name: A, phones: ["+12025550143"], region: US}
- {id: b, name: B, phones: ["+14155552671"], region: US}
"""


def one_schedule(contacts: str, timezone: str, layers: str) -> Schedule:
    """The only schedule of a config of ``contacts``: one in ``timezone`` made of ``layers``.
    Both are YAML list items written from the left margin, so a test shows only what it
    checks (the layers) and not the config's frame."""
    text = (
        "contacts:\n"
        + textwrap.indent(contacts, "  ")
        + f"schedules:\n  - id: s\n    timezone: {timezone}\n    layers:\n"
        + textwrap.indent(layers, "      ")
    )
    schedule = config(text).schedule("s")
    assert schedule is not None
    return schedule


def weekly_ny(handoff: str = "2026-10-26T09:00") -> Schedule:
    rotation = f"- rotation: {{type: weekly, start: {handoff}, members: [a, b]}}\n"
    return one_schedule(US_PAIR, "America/New_York", rotation)


def at_ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


def tokyo(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TOKYO)


def test_weekly_rotation_hands_off_at_local_time_across_the_dst_change() -> None:
    schedule = weekly_ny()
    # DST ends in New York on Sunday 2026-11-01 (02:00 EDT -> 01:00 EST).
    assert on_call(schedule, at_ny("2026-10-26T09:00")) == "a"
    assert on_call(schedule, at_ny("2026-11-02T08:59")) == "a"
    assert on_call(schedule, at_ny("2026-11-02T09:00")) == "b"  # 09:00 EST, not 08:00
    assert on_call(schedule, at_ny("2026-11-09T09:00")) == "a"
    # The same instants in UTC: the hand-off moved from 13:00 UTC to 14:00 UTC.
    assert on_call(schedule, datetime(2026, 11, 2, 13, 30, tzinfo=UTC)) == "a"
    assert on_call(schedule, datetime(2026, 11, 2, 14, 0, tzinfo=UTC)) == "b"


@pytest.mark.parametrize(
    ("rotation", "on_call_at"),
    [
        pytest.param(
            "{type: daily, start: 2026-03-06T09:00, members: [a, b]}",
            # DST starts Sunday 2026-03-08 at 02:00 (-> 03:00 EDT): a 23-hour day.
            [
                ("2026-03-07T09:00", "b"),
                ("2026-03-08T08:59", "b"),
                ("2026-03-08T09:00", "a"),
                ("2026-03-09T09:00", "b"),
            ],
            id="daily-across-spring-forward",
        ),
        pytest.param(
            "{type: custom, length: 12h, start: 2026-10-31T20:00, members: [a, b]}",
            # 12 hours after 20:00 EDT is 07:00 EST on the day DST ends (a 25-hour day).
            [("2026-10-31T20:00", "a"), ("2026-11-01T06:59", "a"), ("2026-11-01T07:00", "b")],
            id="custom-is-an-exact-duration",
        ),
    ],
)
def test_rotation_in_new_york_across_a_dst_change(
    rotation: str, on_call_at: list[tuple[str, str]]
) -> None:
    schedule = one_schedule(US_PAIR, "America/New_York", f"- rotation: {rotation}\n")
    for local_time, expected in on_call_at:
        assert on_call(schedule, at_ny(local_time)) == expected, local_time


def test_before_the_first_hand_off_nobody_is_on_call() -> None:
    schedule = weekly_ny()
    assert on_call(schedule, at_ny("2026-10-26T08:59")) is None


def test_override_that_spans_a_hand_off_replaces_only_the_named_person() -> None:
    schedule = config().schedule("primary")
    assert schedule is not None
    # Week of 11-02: tanaka; from 11-09 09:00: suzuki. Sato covers tanaka Fri 18:00 - Mon 09:00.
    assert on_call(schedule, tokyo("2026-11-06T17:59")) == "tanaka"
    assert on_call(schedule, tokyo("2026-11-06T18:00")) == "sato"
    assert on_call(schedule, tokyo("2026-11-09T08:59")) == "sato"
    assert on_call(schedule, tokyo("2026-11-09T09:00")) == "suzuki"


def test_override_without_replaces_covers_whoever_is_on_call_across_the_hand_off() -> None:
    c = config(
        EXAMPLE.replace("        replaces: tanaka\n", "").replace(
            "2026-11-09T09:00", "2026-11-10T09:00"
        )
    )
    schedule = c.schedule("primary")
    assert schedule is not None
    assert on_call(schedule, tokyo("2026-11-09T08:59")) == "sato"  # covering tanaka
    assert on_call(schedule, tokyo("2026-11-09T09:00")) == "sato"  # and then suzuki
    assert on_call(schedule, tokyo("2026-11-10T09:00")) == "suzuki"


def test_later_layers_win_where_they_apply() -> None:
    schedule = one_schedule(
        """\
- {id: day, name: D, phones: ["090-1111-2222"]}
- {id: night, name: N, phones: ["090-1111-3333"]}
""",
        "Asia/Tokyo",
        """\
- rotation: {type: weekly, start: 2026-11-02T09:00, members: [day]}
- rotation: {type: weekly, start: 2026-11-02T09:00, members: [night]}
  restrict: [{days: [mon, tue, wed, thu, fri], start: "18:00", end: "09:00"}]
""",
    )
    assert on_call(schedule, tokyo("2026-11-04T12:00")) == "day"  # Wednesday noon
    assert on_call(schedule, tokyo("2026-11-04T23:00")) == "night"
    assert on_call(schedule, tokyo("2026-11-05T08:59")) == "night"  # Thursday morning
    assert on_call(schedule, tokyo("2026-11-07T03:00")) == "night"  # Friday night, past midnight
    assert on_call(schedule, tokyo("2026-11-08T03:00")) == "day"  # Saturday night: not restricted


def test_next_change_finds_the_hand_off() -> None:
    schedule = weekly_ny()
    assert next_change(schedule, at_ny("2026-11-01T12:00")) == at_ny("2026-11-02T09:00")


# -- routing -------------------------------------------------------------------------------------


def alert(**kw: object) -> AlertEvent:
    fields: dict[str, object] = {
        "source_event_id": "1",
        "problem_key": "zabbix:1",
        "dedup_key": "d",
        "status": AlertStatus.PROBLEM,
        "severity": Severity.HIGH,
        "title": "Disk full on db01",
        "host": "db01",
        "host_groups": ["DB servers"],
        "tags": [Tag(tag="env", value="prod")],
        "received_at": datetime(2026, 11, 24, tzinfo=UTC),
    }
    fields.update(kw)
    return AlertEvent.model_validate(fields)


def test_first_matching_route_wins_and_the_default_catches_the_rest() -> None:
    routes = config().routes
    assert route_for(alert(), routes).id == "databases"  # type: ignore[union-attr]
    assert route_for(alert(severity=Severity.AVERAGE), routes).id == "everything"  # type: ignore[union-attr]
    assert route_for(alert(host_groups=["Web"]), routes).id == "everything"  # type: ignore[union-attr]


def test_each_kind_of_match() -> None:
    c = config(
        EXAMPLE.split("routes:")[0]
        + """routes:
  - {id: by-tag, match: {tags: {env: prod, team: null}}, policy: default}
  - {id: by-host, match: {hosts: ["web*"]}, policy: default}
  - {id: by-name, match: {problem: "(?i)disk"}, policy: default}
"""
    )
    routes = c.routes
    both_tags = [Tag(tag="env", value="prod"), Tag(tag="team", value="db")]
    assert route_for(alert(tags=both_tags), routes).id == "by-tag"  # type: ignore[union-attr]
    assert route_for(alert(host="web07"), routes).id == "by-host"  # type: ignore[union-attr]
    assert route_for(alert(), routes).id == "by-name"  # type: ignore[union-attr]
    assert route_for(alert(title="CPU high"), routes) is None


def test_durations_accept_units() -> None:
    policy = config().policy("default")
    assert policy is not None
    assert policy.steps[0].wait == timedelta(minutes=5)
    assert policy.steps[1].wait == timedelta(minutes=10)
