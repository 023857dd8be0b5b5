"""Runtime overrides, the pure part: what a request means, what is refused, and who is on call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from yobidashi_dialer.oncall import load_text
from yobidashi_dialer.oncall.overrides import (
    OverrideRequest,
    Rejected,
    RuntimeOverride,
    accept,
    current,
    with_overrides,
)
from yobidashi_dialer.oncall.schedule import who_is_on_call
from yobidashi_dialer.views import oncall_view
from yobidashi_testing.oncall_yaml import THREE_CONTACTS

CONFIG = load_text(
    THREE_CONTACTS
    + """\
  - {id: hotline, name: 窓口, phones: ["0120-444-444"]}
schedules:
  - id: primary
    timezone: Asia/Tokyo
    layers:
      - rotation: {type: weekly, start: 2026-01-05T09:00, members: [tanaka]}
  - id: us
    timezone: America/New_York
    layers:
      - rotation: {type: weekly, start: 2026-01-05T09:00, members: [suzuki]}
"""
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def request(**fields: object) -> OverrideRequest:
    body: dict[str, object] = {
        "schedule": "primary",
        "contact": "sato",
        "from": "2026-12-04T18:00",
        "until": "2026-12-07T09:00",
    }
    body.update(fields)
    return OverrideRequest.model_validate(body)


def add(existing: list[RuntimeOverride], **fields: object) -> RuntimeOverride:
    return accept(CONFIG, existing, request(**fields), now=NOW, new_id=f"ovr-{len(existing)}")


def test_times_without_offset_are_in_the_schedules_timezone() -> None:
    made = add([], replacing="tanaka", by="鈴木", note="発熱")
    assert made.start == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)  # 18:00 JST
    assert made.end == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    assert (made.schedule, made.contact, made.replaces) == ("primary", "sato", "tanaka")
    assert made.view("Asia/Tokyo")["from"] == "2026-12-04T18:00:00+09:00"


def test_an_explicit_offset_wins_over_the_schedules_timezone() -> None:
    made = add([], **{"from": "2026-12-04T18:00+00:00", "until": "2026-12-05T18:00Z"})
    assert made.start == datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"schedule": "nope"}, "schedule", "unknown schedule"),
        ({"contact": "nobody"}, "contact", "unknown contact"),
        ({"contact": "hotline"}, "contact", "no number a person can answer"),
        ({"replacing": "ghost"}, "replacing", "unknown contact"),
        ({"replacing": "sato"}, "replacing", "cannot replace themselves"),
        ({"until": "2026-12-04T17:00"}, "until", "after from"),
        ({"until": "2026-12-04T18:00"}, "until", "after from"),
        ({"from": "2026-12-01T09:00", "until": "2026-12-04T20:00"}, "until", "in the past"),
        ({"until": "2027-06-01T09:00"}, "until", "at most"),
    ],
)
def test_bad_requests_name_the_field(fields: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(Rejected) as caught:
        add([], **fields)
    assert caught.value.field == field
    assert words in caught.value.message
    assert not caught.value.conflict


def test_a_wall_clock_time_skipped_by_dst_is_refused() -> None:
    # 2027-03-14 02:30 does not exist in New York: the clocks jump from 02:00 to 03:00.
    with pytest.raises(Rejected) as caught:
        add([], schedule="us", **{"from": "2027-03-14T02:30", "until": "2027-03-14T09:00"})
    assert caught.value.field == "from"
    assert "does not exist" in caught.value.message


def test_across_a_dst_change_the_wall_clock_times_hold() -> None:
    made = add(
        [],
        schedule="us",
        contact="sato",
        **{"from": "2027-03-13T18:00", "until": "2027-03-15T09:00"},
    )
    assert made.start == datetime(2027, 3, 13, 23, 0, tzinfo=UTC)  # EST, UTC-5
    assert made.end == datetime(2027, 3, 15, 13, 0, tzinfo=UTC)  # EDT, UTC-4


def test_overlaps_for_the_same_slot_are_refused_other_slots_and_times_are_not() -> None:
    first = add([], replacing="tanaka")
    with pytest.raises(Rejected) as caught:
        add([first], contact="suzuki", replacing="tanaka", until="2026-12-05T09:00")
    assert caught.value.conflict
    assert caught.value.field == "from"
    assert first.id in caught.value.message
    with pytest.raises(Rejected):  # "whoever is on call" collides with every slot
        add([first], contact="suzuki", until="2026-12-05T09:00")
    # replacing someone else at the same time is another slot
    other = add([first], contact="tanaka", replacing="suzuki")
    # back to back is not an overlap (the end is exclusive)
    later = add(
        [first], contact="suzuki", **{"from": "2026-12-07T09:00", "until": "2026-12-08T09:00"}
    )
    assert (other.contact, other.replaces) == ("tanaka", "suzuki")
    assert later.start == first.end


def test_an_ended_override_neither_blocks_nor_shows() -> None:
    ended = RuntimeOverride(
        id="old",
        schedule="primary",
        contact="sato",
        start=NOW - timedelta(days=2),
        end=NOW - timedelta(days=1),
        created_at=NOW - timedelta(days=3),
    )
    assert current([ended], NOW) == []
    add([ended], **{"from": "2026-12-01T09:00", "until": "2026-12-05T09:00"})


def test_the_override_decides_who_is_on_call_and_says_why() -> None:
    made = add([], replacing="tanaka", by="鈴木", note="発熱")
    merged = with_overrides(CONFIG, [made])
    primary = merged.schedule("primary")
    assert primary is not None
    before = who_is_on_call(primary, made.start - timedelta(minutes=1))
    during = who_is_on_call(primary, made.start)
    after = who_is_on_call(primary, made.end)
    assert before is not None
    assert (before.contact, before.override) == ("tanaka", False)
    assert during is not None
    assert during.contact == "sato"
    assert during.because(primary) == "override by 鈴木 replacing tanaka: 発熱"
    assert after is not None
    assert after.contact == "tanaka"
    view = oncall_view(merged, made.start + timedelta(hours=1))
    on_call = view["schedules"][0]["on_call"]
    assert (on_call["id"], on_call["because"]) == (
        "sato",
        "override by 鈴木 replacing tanaka: 発熱",
    )
    assert view["schedules"][0]["until"] == made.end.isoformat()
    # the YAML's config itself is untouched
    assert CONFIG.schedule("primary") is not None
    assert CONFIG.schedule("primary").overrides == []  # type: ignore[union-attr]


def test_an_override_replacing_someone_not_on_call_changes_nothing() -> None:
    made = add([], contact="sato", replacing="suzuki")
    primary = with_overrides(CONFIG, [made]).schedule("primary")
    assert primary is not None
    found = who_is_on_call(primary, made.start)
    assert found is not None
    assert found.contact == "tanaka"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        request(colour="red")
