"""Everything a call can say, in one file a reviewer reads: ``data/spoken_vocabulary.txt``.

Every phrase is rendered in Japanese and English for every age bucket, bundle size, severity
and key set. The test fails when the rendering and the file differ, so any change to what
people hear at 3 a.m. shows up in review; ``YOBIDASHI_UPDATE_GOLDEN=1`` rewrites the file.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from yobidashi_common.events import Severity
from yobidashi_dialer.voice import PHRASES, Announcement, Keys, Language, spoken_alert
from yobidashi_dialer.voice.callback_phrases import CALLBACK_PHRASES

GOLDEN = Path(__file__).parent / "data" / "spoken_vocabulary.txt"
NOW = datetime(2026, 11, 24, 3, 12, tzinfo=UTC)
AGES = {
    "just now": timedelta(seconds=20),
    "1 min": timedelta(minutes=1),
    "12 min": timedelta(minutes=12),
    "1 h": timedelta(hours=1),
    "1 h 1 min": timedelta(hours=1, minutes=1),
    "2 h 15 min": timedelta(hours=2, minutes=15),
    "1 day": timedelta(days=1),
    "3 days": timedelta(days=3, hours=5),
}
KEY_SETS = {
    "1 2 *": Keys(),
    "9 0 # with close 3 and comment 4": Keys("9", "0", "#", close="3", comment="4"),
}
NAMES = {"a contact": "田中太郎", "a Zabbix user": "Taro Yamada (yamada)", "nobody known": None}
TITLES: dict[Language, str] = {"ja": "ディスク使用率が90%を超えました", "en": "Disk usage over 90%"}


def render(language: Language) -> list[str]:
    phrases, title = PHRASES[language], TITLES[language]
    lines = [f"== {language} ==", "", "-- one problem, by severity and age --"]
    for severity in Severity:
        for label, age in AGES.items():
            problem = Announcement(severity, "db01", title, NOW - age)
            lines.append(f"[{severity.value} · {label}] {spoken_alert([problem], phrases, NOW)}")
    problem = Announcement(Severity.HIGH, "db01", title, None)
    lines.append(f"[high · start unknown] {spoken_alert([problem], phrases, NOW)}")
    lines += ["", "-- a bundle, by size --"]
    severities = list(Severity)
    for size in (2, 3, 4, 12):
        bundle = [
            Announcement(severities[n % 6], f"web{n:02d}", f"HTTP 応答なし {n}", NOW)
            for n in range(size)
        ]
        lines.append(f"[{size} problems] {spoken_alert(bundle, phrases, NOW)}")
    lines += ["", "-- the menu, by key set --"]
    for label, keys in KEY_SETS.items():
        for bundle_label, bundle_flag in (("one problem", False), ("a bundle", True)):
            lines.append(f"[{label} · {bundle_label}] {phrases.menu(keys, bundle=bundle_flag)}")
    lines += ["", "-- after a key --"]
    lines.append(f"[acknowledged] {phrases.acknowledged}")
    for count in (2, 12):
        lines.append(f"[{count} acknowledged] {phrases.bundle_acknowledged(count)}")
    for label, name in NAMES.items():
        for bundle_label, bundle_flag in (("one problem", False), ("a bundle", True)):
            said = phrases.already_acknowledged(name, bundle=bundle_flag)
            lines.append(f"[already acknowledged by {label} · {bundle_label}] {said}")
    for bundle_label, bundle_flag in (("one problem", False), ("a bundle", True)):
        lines.append(
            f"[already resolved · {bundle_label}] {phrases.already_resolved(bundle=bundle_flag)}"
        )
    lines.append(f"[passed] {phrases.passed}")
    lines.append(f"[invalid key] {phrases.invalid}")
    lines.append(f"[key not taken] {phrases.not_taken}")
    lines.append(f"[no input] {phrases.goodbye_no_input}")
    lines += ["", "-- voicemail, by severity --"]
    for severity in Severity:
        text = phrases.voicemail.format(
            severity=phrases.severity[severity], host="db01", title=title
        )
        lines.append(f"[{severity.value}] {text}")
    lines += ["", "-- a call into Yobidashi (call-back) --"]
    callback = CALLBACK_PHRASES[language]
    lines.append(f"[anyone we will not read to] {callback.neutral}")
    lines.append(f"[asking for the PIN] {callback.pin_prompt}")
    lines.append(f"[nothing open] {callback.nothing_open}")
    bundle = [
        Announcement(Severity.WARNING, "web01", "応答遅延", NOW - timedelta(minutes=1)),
        Announcement(Severity.DISASTER, "db01", title, NOW - timedelta(minutes=10)),
    ]
    lines.append(
        f"[2 problems, newest first] {spoken_alert(bundle, phrases, NOW, newest_first=True)}"
    )
    return [*lines, ""]


def rendered() -> str:
    return "\n".join(render("ja") + render("en"))


def test_every_phrase_is_in_the_golden_file() -> None:
    text = rendered()
    if os.environ.get("YOBIDASHI_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text, (
        "what calls say changed: review it, then YOBIDASHI_UPDATE_GOLDEN=1 to rewrite "
        f"{GOLDEN.relative_to(GOLDEN.parents[3])}"
    )


@pytest.mark.parametrize(
    "wrong",
    [
        "たった今に",  # an adverb takes no に
        "。。",  # a title's own full stop, then ours
        "障害の障害",  # the severity name already says 障害
        "さんが確認済み",
        "another engineerさん",
        "1 minutes",
        "1 hours",
        " a average",
        "The worst is",
        "All 2 problems",
    ],
)
def test_sentences_that_were_wrong_stay_gone(wrong: str) -> None:
    assert wrong not in rendered()


def test_a_title_with_its_own_full_stop_is_read_with_one() -> None:
    problem = Announcement(Severity.HIGH, "db01", "ディスクがいっぱいです。", NOW)
    assert spoken_alert([problem], PHRASES["ja"], NOW).endswith(
        "ディスクがいっぱいです。たった今発生しました。"
    )
