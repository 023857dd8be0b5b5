"""The incident page Zabbix's event menu opens: a real escalation, rendered for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from yobidashi_common.events import (
    AlertEvent,
    AlertStatus,
    KeyAction,
    KeyPressed,
    Severity,
)
from yobidashi_dialer.core.decide import Rules, decide
from yobidashi_dialer.core.model import (
    AlertArrived,
    CallPlaced,
    CallProgress,
    Event,
    Incident,
    KeyPress,
)
from yobidashi_dialer.pages import language, render

TOKYO = ZoneInfo("Asia/Tokyo")
T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def escalated() -> Incident:
    """A Zabbix-driven problem: rung, answered, acknowledged with 1."""
    state: Incident | None = None

    def apply(event: Event, after: float = 1) -> Incident:
        nonlocal state
        state = decide(state, event, T0 + timedelta(seconds=after), Rules()).state
        assert state is not None
        return state

    title = "<script>alert(1)</script> ディスク使用率が90%を超えました"
    incident = apply(
        AlertArrived(
            alert=AlertEvent(
                source_event_id="17",
                problem_key="zabbix:17",
                dedup_key="zabbix.17.problem.1",
                status=AlertStatus.PROBLEM,
                severity=Severity.HIGH,
                title=title,
                host="db01",
                received_at=T0,
                started_at=T0,
                sendto="090-1234-5678",
            )
        ),
        after=0,
    )
    call_id = incident.pages[0].call_id
    assert call_id is not None
    apply(CallPlaced(call_id=call_id, page_id="z1", attempt=1, call_sid="CA1", at=T0))
    apply(CallProgress(call_id=call_id, call_sid="CA1", status="in-progress", at=T0), after=5)
    contact = incident.pages[0].contact.model_copy(update={"name": "山田"}).ref()
    pressed = KeyPressed(
        id="k1",
        call_id=call_id,
        call_sid="CA1",
        problems=[incident.problem],
        contact=contact,
        digit="1",
        action=KeyAction.ACKNOWLEDGE,
        at=T0 + timedelta(seconds=9),
    )
    return apply(KeyPress(key=pressed), after=9)


def test_the_page_reads_the_problem_then_calls_then_timeline_in_japanese() -> None:
    page = render(escalated(), "ja", TOKYO)
    assert page.index("id=problem") < page.index("id=calls") < page.index("id=timeline")
    assert '<html lang="ja">' in page
    for words in ("確認済み", "発信", "応答", "電話で確認", "山田"):
        assert words in page
    assert "2026-11-25 03:00:00 JST" in page  # 18:00 UTC, shown in the dialer's timezone


def test_english_has_english_words_and_the_same_facts() -> None:
    page = render(escalated(), "en", TOKYO)
    assert '<html lang="en">' in page
    for words in ("acknowledged", "calling", "answered", "acknowledged by phone", "山田"):
        assert words in page
    assert "電話で確認" not in page


def test_zabbix_text_is_escaped_and_full_numbers_never_shown() -> None:
    page = render(escalated(), "ja", TOKYO)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "+81 90-****-5678" in page
    assert "+819012345678" not in page
    assert "1234" not in page


def test_the_viewers_language_comes_from_the_query_then_the_browser() -> None:
    assert language("en", "ja-JP,ja;q=0.9") == "en"
    assert language(None, "ja-JP,ja;q=0.9,en;q=0.8") == "ja"
    assert language(None, "en-US,en;q=0.9,ja;q=0.5") == "en"
    assert language(None, None) == "en"
    assert language("fr", "ja") == "ja"
