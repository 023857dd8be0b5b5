"""Normalisation of the media type's body into an AlertEvent: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from yobidashi_common.events import AlertStatus, Severity, UpdateAction
from yobidashi_harness import payloads
from yobidashi_ingest.zabbix import (
    NormalizationError,
    ZabbixWebhook,
    dedup_key,
    parse_update_actions,
    status_of,
    to_alert_event,
)

NOW = datetime(2026, 11, 24, 18, 50, tzinfo=UTC)


def normalize(body: dict[str, Any], tz: str = "UTC") -> Any:
    return to_alert_event(
        ZabbixWebhook.model_validate(body),
        received_at=NOW,
        timezone=ZoneInfo(tz),
        own_users=["yobidashi-acker"],
        own_marker="via Yobidashi",
    )


@pytest.mark.parametrize(
    ("nseverity", "expected"),
    [
        (0, Severity.NOT_CLASSIFIED),
        (1, Severity.INFORMATION),
        (2, Severity.WARNING),
        (3, Severity.AVERAGE),
        (4, Severity.HIGH),
        (5, Severity.DISASTER),
    ],
)
def test_every_zabbix_severity_maps_to_its_name(nseverity: int, expected: Severity) -> None:
    event = normalize(payloads.problem(severity=nseverity))
    assert event.severity is expected
    assert event.severity.rank == nseverity


def test_severity_falls_back_to_the_name_when_the_number_is_an_unresolved_macro() -> None:
    body = payloads.problem(event_nseverity="{EVENT.NSEVERITY}", event_severity="Disaster")
    assert normalize(body).severity is Severity.DISASTER


def test_missing_severity_is_a_clear_error() -> None:
    body = payloads.problem(event_nseverity=None, event_severity=None)
    with pytest.raises(NormalizationError, match="event_nseverity"):
        normalize(body)


def test_out_of_range_severity_is_rejected_by_the_model() -> None:
    with pytest.raises(ValidationError, match="event_nseverity"):
        ZabbixWebhook.model_validate(payloads.problem(event_nseverity="9"))


def test_problem_fields() -> None:
    event = normalize(payloads.problem(), tz="Asia/Tokyo")
    assert event.status is AlertStatus.PROBLEM
    assert event.source == "zabbix"
    assert event.source_event_id == "17"
    assert event.problem_key == "zabbix:17"
    assert event.title == "web01: HTTP service is down"
    assert event.host == "web01"
    assert event.host_groups == ["Linux servers", "Web"]
    assert [(t.tag, t.value) for t in event.tags] == [("service", "web"), ("env", "prod")]
    assert event.sendto == "090-1234-5678"
    assert event.started_at == datetime(2026, 11, 24, 18, 49, 47, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert event.received_at == NOW
    assert event.update is None
    assert event.resolved_at is None
    assert not event.acknowledged


def test_recovery() -> None:
    event = normalize(payloads.recovery())
    assert event.status is AlertStatus.RESOLVED
    assert event.recovery_event_id == "18"
    assert event.resolved_at == datetime(2026, 11, 24, 18, 55, 1, tzinfo=UTC)
    assert event.problem_key == "zabbix:17"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("acknowledged", [UpdateAction.ACKNOWLEDGED]),
        ("unacknowledged", [UpdateAction.UNACKNOWLEDGED]),
        ("commented", [UpdateAction.COMMENTED]),
        ("acknowledged and commented", [UpdateAction.ACKNOWLEDGED, UpdateAction.COMMENTED]),
        ("changed severity from Warning to High", [UpdateAction.SEVERITY_CHANGED]),
        (
            "acknowledged, commented and changed severity from Warning to Disaster",
            [UpdateAction.ACKNOWLEDGED, UpdateAction.COMMENTED, UpdateAction.SEVERITY_CHANGED],
        ),
        ("closed", [UpdateAction.CLOSED]),
        ("commented and closed", [UpdateAction.COMMENTED, UpdateAction.CLOSED]),
        ("suppressed until 2026.11.25 09:00:00", [UpdateAction.SUPPRESSED]),
        ("unsuppressed", [UpdateAction.UNSUPPRESSED]),
    ],
)
def test_each_kind_of_update(action: str, expected: list[UpdateAction]) -> None:
    event = normalize(payloads.update(action=action))
    assert event.status is AlertStatus.UPDATED
    assert event.update is not None
    assert event.update.actions == expected
    assert parse_update_actions(action) == expected


def test_severity_change_carries_the_new_severity() -> None:
    body = payloads.update(
        action="changed severity from Warning to Disaster", update_nseverity="5", severity=2
    )
    event = normalize(body)
    assert event.update is not None
    assert event.update.new_severity is Severity.DISASTER
    assert event.severity is Severity.DISASTER


def test_severity_change_read_from_the_action_text_when_the_macro_is_missing() -> None:
    body = payloads.update(action="changed severity from Warning to Average", severity=2)
    event = normalize(body)
    assert event.update is not None
    assert event.update.new_severity is Severity.AVERAGE


def test_ack_in_the_zabbix_ui_is_news_but_our_own_ack_is_recognised() -> None:
    ui = normalize(payloads.update(user="Taro Yamada (yamada)"))
    assert ui.update is not None
    assert not ui.update.from_yobidashi
    assert ui.acknowledged
    ours = normalize(
        payloads.update(
            user="Yobidashi Acker (yobidashi-acker)",
            message="Acknowledged by phone by 山田太郎 (+81 90-****-5678) via Yobidashi",
        )
    )
    assert ours.update is not None
    assert ours.update.from_yobidashi


def test_a_person_who_writes_the_marker_is_still_a_person() -> None:
    """Who made an update is decided by the username, never by text in the message."""
    typed = normalize(
        payloads.update(user="Taro Yamada (yamada)", message="escalated via Yobidashi at 03:12")
    )
    assert typed.update is not None
    assert not typed.update.from_yobidashi
    assert typed.acknowledged
    named_like_us = normalize(payloads.update(user="yobidashi-acker (yamada)", message="ok"))
    assert named_like_us.update is not None
    assert not named_like_us.update.from_yobidashi


def test_an_updater_the_recipient_may_not_see_is_unknown_not_inaccessible_user() -> None:
    event = normalize(payloads.update(user="Inaccessible user", message="via Yobidashi [ref x]"))
    assert event.update is not None
    assert event.update.user is None
    assert event.update.from_yobidashi  # recognised by the marker in the message


def test_japanese_text_survives_intact() -> None:
    body = payloads.problem(name="サーバーが応答しません", host="東京-web01", update_message=None)
    body["event_tags"] = '[{"tag":"担当","value":"インフラ"}]'
    event = normalize(body)
    assert event.title == "サーバーが応答しません"
    assert event.host == "東京-web01"
    assert event.tags[0].tag == "担当"


def test_missing_optional_fields() -> None:
    minimal = {"event_id": "5", "event_value": "1", "event_nseverity": "3"}
    event = normalize(minimal)
    assert event.title == "(unnamed problem)"
    assert event.host == "(unknown host)"
    assert event.tags == []
    assert event.host_groups == []
    assert event.started_at is None
    assert event.sendto is None
    assert event.url is None


@pytest.mark.parametrize(
    "macro",
    ["{EVENT.RECOVERY.ID}", "{ALERT.SENDTO}", "{EVENT.TAGSJSON}", "*UNKNOWN*", "", "  "],
)
def test_literal_unresolved_macros_mean_absent(macro: str) -> None:
    fields = ("recovery_event_id", "sendto", "event_tags", "update_user", "host_groups")
    literal: dict[str, Any] = dict.fromkeys((*fields, "event_date"), macro)
    body = payloads.problem(**literal)
    event = normalize(body)
    assert event.recovery_event_id is None
    assert event.sendto is None
    assert event.tags == []
    assert event.host_groups == []
    assert event.started_at is None


def test_macro_with_context_is_recognised_as_literal() -> None:
    body = payloads.problem(sendto='{$PHONE:"night"}')
    assert normalize(body).sendto is None


def test_status_precedence_update_over_value() -> None:
    assert status_of(ZabbixWebhook.model_validate(payloads.update())) is AlertStatus.UPDATED
    assert status_of(ZabbixWebhook.model_validate(payloads.recovery())) is AlertStatus.RESOLVED


def test_event_id_must_be_numeric() -> None:
    with pytest.raises(ValidationError, match="event_id"):
        ZabbixWebhook.model_validate(payloads.problem(event_id="{EVENT.ID}"))


def test_integers_are_accepted_where_strings_are_usual() -> None:
    body = payloads.problem(event_id=42, event_value=1, event_nseverity=5)
    event = normalize(body)
    assert event.source_event_id == "42"
    assert event.severity is Severity.DISASTER


def test_long_text_is_truncated() -> None:
    event = normalize(payloads.problem(name="x" * 5000, message="y" * 10000))
    assert len(event.title) == 1024
    assert event.title.endswith("…")
    assert event.message is not None
    assert len(event.message) == 4000


class TestDedupKey:
    """Retries of one alert collapse; distinct notifications never merge."""

    def key(self, body: dict[str, Any]) -> str:
        payload = ZabbixWebhook.model_validate(body)
        return dedup_key(payload, status_of(payload))

    def test_a_retry_has_the_same_key(self) -> None:
        assert self.key(payloads.problem()) == self.key(payloads.problem())

    def test_received_time_and_message_text_do_not_matter(self) -> None:
        assert self.key(payloads.problem()) == self.key(payloads.problem(message="other"))

    def test_another_recipient_is_another_notification(self) -> None:
        assert self.key(payloads.problem(sendto="+15555550100")) != self.key(payloads.problem())

    def test_a_later_step_is_another_notification(self) -> None:
        step1 = payloads.problem(step_history="Problem started: 2026.11.24 18:49:47 Age: 0m")
        step2 = payloads.problem(
            step_history=step1["esc_history"] + "\n1. 2026.11.24 18:49:50 message sent"
        )
        assert self.key(step1) != self.key(step2)

    def test_updates_and_recovery_are_distinct(self) -> None:
        keys = {
            self.key(payloads.problem()),
            self.key(payloads.update(action="acknowledged")),
            self.key(payloads.update(action="commented")),
            self.key(payloads.update(action="commented", update_time="18:51:00")),
            self.key(payloads.recovery()),
        }
        assert len(keys) == 5

    def test_key_is_a_valid_nats_msg_id(self) -> None:
        key = self.key(payloads.problem(name="日本語", host="東京"))
        assert key.isascii()
        assert key.startswith("zabbix.17.problem.")
