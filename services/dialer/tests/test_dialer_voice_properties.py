"""Hostile text in TwiML: whatever a problem title, host or person's name contains, every
document the dialer hands Twilio parses as XML 1.0, has the verbs we use and nothing else,
and keeps each <Say> within the length the builder promises.

Property-based (hypothesis); pure functions, no I/O.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from yobidashi_common.events import Severity
from yobidashi_dialer.voice import (
    PHRASES,
    Announcement,
    Keys,
    Language,
    after_key,
    menu_twiml,
    spoken_alert,
    voicemail_twiml,
)
from yobidashi_dialer.voice.phrases import spoken_name
from yobidashi_dialer.voice.twiml import (
    BUNDLE_ITEMS_SPOKEN,
    HOST_LIMIT,
    SAY_LIMIT,
    TITLE_LIMIT,
    TWIML_LIMIT,
    speakable,
)
from yobidashi_testing.voice import NOW, VOICES, call

KEYS = Keys()
GATHER_URL = "https://y.example/twilio/voice/gather?call=c1&round=1"

# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
CHAR_REF = re.compile(r"&#(x[0-9a-fA-F]+|[0-9]+);")
# The verbs the builder may emit, and where.
TOP_VERBS = {"Say", "Gather", "Pause", "Hangup", "Redirect", "Play"}
IN_GATHER = {"Say", "Pause", "Play"}

# -- strategies ---------------------------------------------------------------------------------

any_char = st.characters(blacklist_categories=())  # surrogates and control characters included
markup = st.sampled_from(
    [
        "<Say>",
        "</Say></Gather><Redirect>https://evil.example/</Redirect>",
        "<Hangup/>",
        "&amp;",
        "&",
        "]]>",
        "<![CDATA[x]]>",
        "<?xml version='1.0'?>",
        '"',
        "&#0;",
        "&#xD800;",
        "\x00",
        "\ufffe",
        "\r\n\t",
        "{name}",
        "{0}",
    ]
)
hostile = st.one_of(
    st.text(alphabet=any_char, max_size=300),
    st.lists(st.one_of(markup, st.text(alphabet=any_char, max_size=10)), max_size=12).map("".join),
    st.builds(
        lambda piece, n: piece * n,
        st.sampled_from(["&", "<", "障害", "\x01", "\ud800", "😀", " ", "a.", "x"]),
        st.sampled_from([100, 1_000, 10_000]),
    ),
)
started = st.one_of(
    st.none(),
    st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=4000)).map(
        lambda ago: NOW - ago
    ),
)
announcements = st.builds(Announcement, st.sampled_from(list(Severity)), hostile, hostile, started)
ordinary_char = st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"])
ascii_char = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
languages: st.SearchStrategy[Language] = st.sampled_from(["ja", "en"])


# -- checks -------------------------------------------------------------------------------------


def parse(xml: str) -> ET.Element:
    """The document as Twilio would read it, after checking every character is XML 1.0."""
    assert len(xml) <= 100_000
    forbidden = XML_FORBIDDEN.search(xml)
    assert forbidden is None, f"raw {forbidden.group()!r} in {xml[:300]!r}"
    for ref in CHAR_REF.finditer(xml):
        value = ref.group(1)
        code = int(value[1:], 16) if value.startswith("x") else int(value)
        assert not XML_FORBIDDEN.match(chr(code)), f"reference {ref.group()} in {xml[:300]!r}"
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    for child in root:
        assert child.tag in TOP_VERBS, child.tag
        if child.tag == "Gather":
            for inner in child:
                assert inner.tag in IN_GATHER, inner.tag
                assert len(inner) == 0, "nothing nested in a <Say>"
        else:
            assert len(child) == 0, f"nothing nested in <{child.tag}>"
    return root


def says(root: ET.Element, language: Language) -> list[str]:
    phrases = PHRASES[language]
    found = []
    for say in root.iter("Say"):
        assert say.get("language") == phrases.code
        assert say.get("voice") == VOICES.for_code(phrases.code)
        assert say.text, "an empty <Say>"
        assert len(say.text) <= SAY_LIMIT
        found.append(say.text)
    return found


def alert_bound(problems: list[Announcement], language: Language, title_limit: int) -> int:
    """The longest the alert <Say> may be: its fixed words (host and title left empty) plus the
    builder's limits for host and title."""
    phrases = PHRASES[language]
    skeleton = [Announcement(p.severity, "", "", p.started_at) for p in problems]
    fixed = len(spoken_alert(skeleton, phrases, NOW, title_limit))
    if len(problems) == 1:
        return fixed + HOST_LIMIT + title_limit
    return fixed + BUNDLE_ITEMS_SPOKEN * (HOST_LIMIT + title_limit // 2)


def clean(text: str) -> bool:
    """Text that should come through unchanged: printable, single-spaced, short."""
    return (
        text == " ".join(text.split())
        and text.isprintable()
        and not XML_FORBIDDEN.search(text)
        and len(text) > 0
    )


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(announcements, min_size=1, max_size=6), languages)
@example([Announcement(Severity.HIGH, "db\x0001", "disk\ud800 <full> & ]]>", NOW)], "ja")
def test_the_call_document_is_valid_twiml_within_limits(
    problems: list[Announcement], language: Language
) -> None:
    xml = call(problems, language, GATHER_URL)
    assert len(xml) <= TWIML_LIMIT, "inline TwiML is limited to 4000 characters"
    root = parse(xml)
    [gather] = root.findall("Gather")
    assert gather.get("action") == GATHER_URL
    assert gather.get("numDigits") == "1"
    alert, menu = says(root, language)
    assert len(alert) <= alert_bound(problems, language, TITLE_LIMIT)
    assert menu == PHRASES[language].menu(KEYS, bundle=len(problems) > 1)


@settings(max_examples=200, deadline=None)
@given(
    title=st.text(alphabet=ordinary_char, min_size=1, max_size=TITLE_LIMIT),
    host=st.text(alphabet=ascii_char, min_size=1, max_size=HOST_LIMIT),
    language=languages,
)
def test_ordinary_text_is_read_as_it_is(title: str, host: str, language: Language) -> None:
    """The flip side: sanitising must not eat what a real trigger name says."""
    problem = Announcement(Severity.AVERAGE, host, title, NOW - timedelta(minutes=3))
    xml = call([problem], language, GATHER_URL)
    alert = says(parse(xml), language)[0]
    assert host in alert
    if clean(title) and "\ufeff" not in title:
        # All of it, but for a full stop of its own at the end: the call adds one.
        assert title.rstrip(" 。．.!！?？") in alert


@settings(max_examples=200, deadline=None)
@given(announcements, languages)
def test_the_voicemail_is_valid_twiml_within_limits(
    problem: Announcement, language: Language
) -> None:
    xml = voicemail_twiml(problem, phrases=PHRASES[language], voices=VOICES)
    assert len(xml) <= TWIML_LIMIT, "sent inline with calls.update(twiml=...)"
    root = parse(xml)
    [text] = says(root, language)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    phrases = PHRASES[language]
    fixed = len(
        phrases.voicemail.format(severity=phrases.severity[problem.severity], host="", title="")
    )
    assert len(text) <= fixed + HOST_LIMIT + TITLE_LIMIT


@settings(max_examples=200, deadline=None)
@given(name=hostile, language=languages)
@example(name="Sato\x01 \ud800 <b>", language="ja")
@example(name="佐藤 花子 (sato)", language="en")
def test_already_acknowledged_by_any_name_is_valid_twiml(name: str, language: Language) -> None:
    """The name comes from Zabbix ({USER.FULLNAME} of whoever acknowledged) or the on-call
    config: text we do not control, read out in "already acknowledged by NAME"."""
    phrases = PHRASES[language]
    text = phrases.already_acknowledged(name, bundle=False)
    xml = after_key(text, phrases=phrases, voices=VOICES)
    root = parse(xml)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    [said] = says(root, language)
    if clean(name) and len(name) <= 40:
        assert spoken_name(name) in said


@settings(max_examples=100, deadline=None)
@given(language=languages, bundle=st.booleans(), prefix=st.none() | hostile)
def test_the_menu_is_valid_twiml(language: Language, bundle: bool, prefix: str | None) -> None:
    phrases = PHRASES[language]
    xml = menu_twiml(
        phrases=phrases,
        voices=VOICES,
        gather_url=GATHER_URL,
        gather_timeout=6,
        bundle=bundle,
        keys=KEYS,
        prefix=prefix,
    )
    root = parse(xml)
    texts = says(root, language)
    assert texts[-1] == phrases.menu(KEYS, bundle=bundle)


@settings(max_examples=200, deadline=None)
@given(text=hostile, limit=st.integers(min_value=2, max_value=400))
def test_speakable_is_short_clean_and_stable(text: str, limit: int) -> None:
    spoken = speakable(text, limit)
    assert len(spoken) <= limit
    assert not XML_FORBIDDEN.search(spoken)
    assert spoken == spoken.strip()
    assert "  " not in spoken
    assert speakable(spoken, limit) == spoken
