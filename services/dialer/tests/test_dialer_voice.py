"""What a call says, as TwiML: pure functions over text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from yobidashi_common.events import Severity
from yobidashi_dialer.voice import (
    PHRASES,
    Announcement,
    Keys,
    Voices,
    after_key,
    menu_twiml,
    spoken_alert,
    voicemail_twiml,
)
from yobidashi_dialer.voice.twiml import TWIML_LIMIT, speakable
from yobidashi_testing.voice import NOW, VOICES, call


def ann(
    title: str = "HTTP down", host: str = "web01", minutes: float = 5, sev: Severity = Severity.HIGH
) -> Announcement:
    return Announcement(sev, host, title, NOW - timedelta(minutes=minutes))


def doc(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_japanese_call_reads_severity_host_problem_and_age_then_the_menu() -> None:
    xml = call(
        [ann("ディスク使用率が90%を超えました", "db01", minutes=12)],
        "ja",
        gather_url="https://y.example/twilio/voice/gather?call=c1&round=1",
    )
    root = doc(xml)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1"
    assert gather.get("actionOnEmptyResult") == "true"
    assert gather.get("action") == "https://y.example/twilio/voice/gather?call=c1&round=1"
    alert, menu = gather.findall("Say")
    assert alert.get("language") == "ja-JP"
    assert alert.get("voice") == "Polly.Mizuki"
    assert alert.text == (
        "こちらはヨビダシです。障害のお知らせです。重要度、重度の障害。ホスト、db01。"
        "ディスク使用率が90%を超えました。12分前に発生しました。"
    )
    assert menu.text is not None
    assert "1を" in menu.text
    assert "2を" in menu.text
    assert "アスタリスク" in menu.text


@pytest.mark.parametrize(
    ("minutes", "ja", "en"),
    [
        (0.2, "たった今", "just now"),
        (1, "1分前", "1 minute ago"),
        (59, "59分前", "59 minutes ago"),
        (60, "1時間前", "1 hour ago"),
        (135, "2時間15分前", "2 hours and 15 minutes ago"),
        (60 * 24 * 3, "3日前", "3 days ago"),
    ],
)
def test_age_phrases(minutes: float, ja: str, en: str) -> None:
    assert PHRASES["ja"].age(timedelta(minutes=minutes)) == ja
    assert PHRASES["en"].age(timedelta(minutes=minutes)) == en


def test_unknown_start_time_says_nothing_about_age() -> None:
    text = spoken_alert([Announcement(Severity.WARNING, "h", "t", None)], PHRASES["en"], NOW)
    assert text == "This is Yobidashi with an alert. Severity warning. Host h. t."


def test_xml_metacharacters_are_escaped_and_control_characters_dropped() -> None:
    title = 'a < b && c > "d" \x00\x07 </Say><Hangup/>'
    xml = call([ann(title)], "en")
    root = doc(xml)  # parses: the document is still valid XML
    assert root.find("Hangup") is None
    said = root.find("Gather/Say")
    assert said is not None
    assert said.text is not None
    assert 'a < b && c > "d" </Say><Hangup/>' in said.text
    assert "\x00" not in xml


def test_long_text_is_cut_at_a_boundary_and_fits_twilios_limit() -> None:
    title = "ディスクの使用率が閾値を超えています。" * 200
    xml = call([ann(title, "h" * 300)], "ja")
    assert len(xml) <= TWIML_LIMIT
    said = doc(xml).find("Gather/Say")
    assert said is not None
    assert said.text is not None
    assert "…" in said.text


def test_speakable_prefers_a_boundary() -> None:
    assert speakable("one two three four five six", 15) == "one two three…"
    assert speakable("short", 15) == "short"
    assert speakable("  many\n\n spaces\there ", 50) == "many spaces here"


def test_bundle_reads_the_count_the_worst_and_a_few() -> None:
    problems = [ann(f"p{i}", f"web{i:02d}", sev=Severity.WARNING) for i in range(12)]
    problems[7] = ann("db down", "db01", sev=Severity.DISASTER)
    text = spoken_alert(problems, PHRASES["en"], NOW)
    assert "You have 12 new problems. The highest severity is disaster." in text
    assert text.index("db01") < text.index("web00")  # worst first
    assert "And 9 more." in text
    xml = call(problems, "en")
    assert "acknowledge all of them" in xml


def test_after_key_says_it_then_hangs_up() -> None:
    root = doc(after_key(PHRASES["ja"].acknowledged, phrases=PHRASES["ja"], voices=VOICES))
    assert [child.tag for child in root] == ["Say", "Hangup"]


def test_menu_with_a_prefix_is_a_gather() -> None:
    root = doc(
        menu_twiml(
            phrases=PHRASES["en"],
            voices=VOICES,
            gather_url="u",
            gather_timeout=6,
            bundle=False,
            keys=Keys(),
            prefix=PHRASES["en"].invalid,
        )
    )
    texts = [say.text for say in root.findall("Gather/Say")]
    assert texts[0] == "That key is not valid."
    assert texts[1] is not None
    assert texts[1].startswith("Press 1")


def test_voicemail_is_short_and_in_the_contacts_language() -> None:
    root = doc(
        voicemail_twiml(ann("バックアップ失敗", "nas01"), phrases=PHRASES["ja"], voices=VOICES)
    )
    say = root.find("Say")
    assert say is not None
    assert say.get("language") == "ja-JP"
    assert say.text is not None
    assert "nas01" in say.text
    assert "バックアップ失敗" in say.text
    assert root.find("Gather") is None
    assert root.find("Hangup") is not None


def test_english_voice_is_configurable() -> None:
    voices = Voices(ja="Google.ja-JP-Standard-A", en="Polly.Matthew")
    xml = after_key("x", phrases=PHRASES["en"], voices=voices)
    say = doc(xml).find("Say")
    assert say is not None
    assert say.get("voice") == "Polly.Matthew"
