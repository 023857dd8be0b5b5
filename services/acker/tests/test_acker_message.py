"""Pure decisions: the action bitmask, the message text, the local time and the ref."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from yobidashi_acker.message import (
    UNKNOWN_CONTACT,
    ZABBIX_MESSAGE_MAX,
    Intent,
    contact_zone,
    local_time,
    make_ref,
    plan,
    ref_marker,
    render,
)
from yobidashi_acker.settings import DEFAULT_MESSAGE_TEMPLATE
from yobidashi_acker.zabbix import AckEntry, EventInfo
from yobidashi_common.events import AckOutcome, ContactRef, KeyAction

TOKYO = ZoneInfo("Asia/Tokyo")
PRESSED = datetime(2026, 11, 24, 18, 12, 30, tzinfo=UTC)  # 03:12 the next day in Tokyo


def event(
    *,
    acknowledged: bool = False,
    resolved: bool = False,
    manual_close: bool | None = True,
    acks: tuple[AckEntry, ...] = (),
) -> EventInfo:
    return EventInfo(
        event_id="17",
        is_problem=True,
        acknowledged=acknowledged,
        resolved=resolved,
        manual_close=manual_close,
        acknowledges=acks,
    )


def contact(name: str | None = "山田太郎", tz: str = "Asia/Tokyo") -> ContactRef:
    return ContactRef(id="yamada", name=name, masked_number="+81 90-****-5678", timezone=tz)


# -- the bitmask ---------------------------------------------------------------------------------


def test_acknowledge_is_ack_plus_message() -> None:
    decided = plan(Intent.ACKNOWLEDGE, event())
    assert decided.action == 6
    assert decided.verb == "Acknowledged"


def test_close_is_seven_where_the_trigger_allows_manual_close() -> None:
    decided = plan(Intent.CLOSE, event(manual_close=True))
    assert decided.action == 7
    assert decided.verb == "Acknowledged and closed"
    assert decided.note == ""


@pytest.mark.parametrize("manual_close", [False, None])
def test_close_without_manual_close_acknowledges_and_says_why(manual_close: bool | None) -> None:
    decided = plan(Intent.CLOSE, event(manual_close=manual_close))
    assert decided.action == 6
    assert "does not allow manual close" in decided.note
    assert decided.detail is not None
    assert "not closed" in decided.detail


def test_close_of_an_acknowledged_problem_only_closes() -> None:
    decided = plan(Intent.CLOSE, event(acknowledged=True))
    assert decided.action == 5
    assert decided.verb == "Closed"


def test_close_after_zabbix_refused_to_close_falls_back_to_acknowledge() -> None:
    decided = plan(Intent.CLOSE, event(), allow_close=False)
    assert decided.action == 6
    assert "refused" in decided.note


def test_comment_is_message_only_even_when_acknowledged() -> None:
    assert plan(Intent.COMMENT, event()).action == 4
    assert plan(Intent.COMMENT, event(acknowledged=True)).action == 4


def test_an_acknowledged_problem_is_not_written_again() -> None:
    earlier = AckEntry(action=6, message="on it", clock=1795546190, username="suzuki")
    decided = plan(Intent.ACKNOWLEDGE, event(acknowledged=True, acks=(earlier,)))
    assert not decided.write
    assert decided.skipped is AckOutcome.ALREADY_ACKNOWLEDGED
    assert decided.detail == "already acknowledged in Zabbix by suzuki at 2026-11-24 18:49:50 UTC"


def test_a_second_phone_ack_says_it_came_through_yobidashi() -> None:
    ours = AckEntry(action=6, message="Acknowledged by phone … via Yobidashi [call CA1/ref x]")
    decided = plan(Intent.ACKNOWLEDGE, event(acknowledged=True, acks=(ours,)))
    assert decided.detail == "already acknowledged by phone through Yobidashi"


@pytest.mark.parametrize("resolved", [True, False])
def test_close_of_an_acknowledged_problem_that_is_already_closing_writes_nothing(
    resolved: bool,
) -> None:
    acks = () if resolved else (AckEntry(action=7, message="closed by hand"),)
    decided = plan(Intent.CLOSE, event(acknowledged=True, resolved=resolved, acks=acks))
    assert not decided.write
    assert decided.skipped is AckOutcome.ALREADY_ACKNOWLEDGED
    assert decided.detail is not None
    assert "already resolved or being closed" in decided.detail


def test_close_of_an_unacknowledged_resolved_problem_acknowledges_it() -> None:
    decided = plan(Intent.CLOSE, event(resolved=True))
    assert decided.action == 6
    assert "already resolved" in decided.note


def test_intent_of_key_actions() -> None:
    assert Intent.of(KeyAction.ACKNOWLEDGE) is Intent.ACKNOWLEDGE
    assert Intent.of(KeyAction.CLOSE) is Intent.CLOSE
    assert Intent.of(KeyAction.COMMENT) is Intent.COMMENT
    assert Intent.of(KeyAction.PASS) is None
    assert Intent.of(KeyAction.REPEAT) is None


# -- the message ---------------------------------------------------------------------------------


def test_message_says_who_when_how_and_carries_the_marker_and_ref() -> None:
    text = render(
        DEFAULT_MESSAGE_TEMPLATE,
        verb="Acknowledged",
        contact=contact(),
        at=PRESSED,
        zone=TOKYO,
        call_sid="CA0123456789abcdef0123456789abcdef",
        ref="abc123def456",
    )
    assert text == (
        "Acknowledged by phone by 山田太郎 (+81 90-****-5678) at 2026-11-25 03:12 JST "
        "via Yobidashi [call CA0123456789abcdef0123456789abcdef/ref abc123def456]"
    )


def test_message_without_a_name_and_with_a_note() -> None:
    text = render(
        DEFAULT_MESSAGE_TEMPLATE,
        verb="Acknowledged",
        contact=contact(name=None),
        at=PRESSED,
        zone=TOKYO,
        call_sid="CA1",
        ref="r",
        note=" Close requested, but the trigger does not allow manual close.",
    )
    assert text.startswith(f"Acknowledged by phone by {UNKNOWN_CONTACT} (+81 90-****-5678)")
    assert text.endswith(
        "[call CA1/ref r] Close requested, but the trigger does not allow manual close."
    )


def test_a_blank_name_counts_as_no_name() -> None:
    text = render(
        "{who} via Yobidashi {ref}",
        verb="",
        contact=contact(name="   "),
        at=PRESSED,
        zone=TOKYO,
        call_sid="CA1",
        ref="r",
    )
    assert text == f"{UNKNOWN_CONTACT} via Yobidashi r"


def test_local_time_uses_the_contacts_zone_and_names_it() -> None:
    assert local_time(PRESSED, ZoneInfo("Asia/Tokyo")) == "2026-11-25 03:12 JST"
    assert local_time(PRESSED, ZoneInfo("Europe/Berlin")) == "2026-11-24 19:12 CET"
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert local_time(summer, ZoneInfo("America/New_York")) == "2026-07-01 08:00 EDT"
    assert local_time(PRESSED, ZoneInfo("UTC")) == "2026-11-24 18:12 UTC"


def test_an_unknown_contact_zone_falls_back_to_the_default() -> None:
    assert contact_zone(contact(tz="Mars/Olympus"), TOKYO) == TOKYO
    assert contact_zone(contact(tz="Europe/Paris"), TOKYO) == ZoneInfo("Europe/Paris")


def test_an_oversized_custom_message_is_cut_to_what_must_stay() -> None:
    template = "x" * 1500 + " {who} {who} {who} via Yobidashi {ref}"
    text = render(
        template,
        verb="Acknowledged",
        contact=contact(name="N" * 400),
        at=PRESSED,
        zone=TOKYO,
        call_sid="CA" + "9" * 200,
        ref="abc123def456",
    )
    assert len(text) <= ZABBIX_MESSAGE_MAX
    assert "via Yobidashi" in text
    assert ref_marker("abc123def456") in text


# -- the ref -------------------------------------------------------------------------------------


def test_ref_is_stable_per_keypress_problem_and_intent() -> None:
    ref = make_ref("kp-1", "zabbix:17", Intent.ACKNOWLEDGE)
    assert ref == make_ref("kp-1", "zabbix:17", Intent.ACKNOWLEDGE), "the same on redelivery"
    assert re.fullmatch(r"[0-9a-f]{12}", ref), ref
    others = {
        make_ref("kp-2", "zabbix:17", Intent.ACKNOWLEDGE),
        make_ref("kp-1", "zabbix:18", Intent.ACKNOWLEDGE),
        make_ref("kp-1", "zabbix:17", Intent.CLOSE),
    }
    assert ref not in others
    assert len(others) == 3


def test_event_find_matches_only_our_ref() -> None:
    ref = make_ref("kp-1", "zabbix:17", Intent.ACKNOWLEDGE)
    mine = AckEntry(action=6, message=f"… via Yobidashi [call CA1/ref {ref}]")
    other = AckEntry(action=4, message="… via Yobidashi [call CA2/ref 000000000000]")
    assert event(acks=(other, mine)).find(ref_marker(ref)) is mine
    assert event(acks=(other,)).find(ref_marker(ref)) is None
