"""TwiML for each moment of a call, built with the official ``twilio.twiml`` builder.

The builder escapes XML metacharacters; this module also drops characters XML 1.0 cannot
carry at all and cuts long text at a natural boundary, so any alert text yields valid TwiML
within Twilio's 4000-character limit for inline TwiML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from twilio.twiml.voice_response import Gather, VoiceResponse

from yobidashi_common.events import Severity
from yobidashi_dialer.voice.phrases import Keys, Phrases

# Inline TwiML may hold 4000 characters; keep a margin for the builder's own markup.
TWIML_LIMIT = 4000
TITLE_LIMIT = 160
HOST_LIMIT = 60
# Any one <Say>: well above the longest the builder composes (a bundle, about 600), so it only
# ever cuts text that did not come from the builder's limits, e.g. a name from Zabbix.
SAY_LIMIT = 1000
BUNDLE_ITEMS_SPOKEN = 3

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SPACES = re.compile(r"\s+")
_BOUNDARY = re.compile(r"[\s。、，,.:;！？!?）)\]」』-]")
_FINAL_STOP = re.compile(r"[\s。．.!！?？]+$")


def speakable(text: str, limit: int) -> str:
    """Text-to-speech-safe text of at most ``limit`` characters, cut at a boundary if it can."""
    text = _SPACES.sub(" ", _XML_INVALID.sub("", text)).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    boundaries = [m.end() for m in _BOUNDARY.finditer(cut)]
    if boundaries and boundaries[-1] >= limit * 0.6:
        cut = cut[: boundaries[-1]]
    return cut.rstrip(" 、，,.:;-") + "…"


def _sentence(title: str, limit: int) -> str:
    """A title to end with our own full stop: its own would be read twice (「…。。」)."""
    return _FINAL_STOP.sub("", speakable(title, limit)) or speakable(title, limit)


@dataclass(frozen=True)
class Announcement:
    """One problem, as the call reads it."""

    severity: Severity
    host: str
    title: str
    started_at: datetime | None


@dataclass(frozen=True)
class Voices:
    ja: str = "Polly.Mizuki"
    en: str = "Polly.Joanna"

    def for_code(self, code: str) -> str:
        return self.ja if code.startswith("ja") else self.en


def spoken_alert(
    problems: Sequence[Announcement],
    phrases: Phrases,
    now: datetime,
    title_limit: int = TITLE_LIMIT,
    *,
    newest_first: bool = False,
) -> str:
    """The main message: one problem in full, or a bundle's count, worst and first few."""
    parts = [phrases.intro]
    if len(problems) == 1:
        p = problems[0]
        parts.append(
            phrases.alert.format(
                severity=phrases.severity[p.severity],
                host=speakable(p.host, HOST_LIMIT),
                title=_sentence(p.title, title_limit),
            )
        )
        if p.started_at is not None:
            parts.append(phrases.started(now - p.started_at))
        return phrases.joiner.join(parts)
    worst = max(problems, key=lambda p: p.severity.rank)
    # A call-back lists what happened last first, as the caller asked "what did I miss?".
    ordered = (
        list(problems)
        if newest_first
        else sorted(problems, key=lambda p: p.severity.rank, reverse=True)
    )
    parts.append(
        phrases.bundle_intro.format(count=len(problems), worst=phrases.severity[worst.severity])
    )
    for n, p in enumerate(ordered[:BUNDLE_ITEMS_SPOKEN], start=1):
        parts.append(
            phrases.bundle_item.format(
                n=n, host=speakable(p.host, HOST_LIMIT), title=_sentence(p.title, title_limit // 2)
            )
        )
    if len(ordered) > BUNDLE_ITEMS_SPOKEN:
        parts.append(phrases.bundle_more.format(count=len(ordered) - BUNDLE_ITEMS_SPOKEN))
    return phrases.joiner.join(parts)


def _say(node: VoiceResponse | Gather, text: str, phrases: Phrases, voices: Voices) -> None:
    # Every text goes through speakable(), not only the alert's: "already acknowledged by
    # {name}" carries a name from Zabbix, and a control character in it would break the XML.
    text = speakable(text, SAY_LIMIT)
    if text:  # nothing speakable left: no empty <Say> for Twilio to complain about
        node.say(text, language=phrases.code, voice=voices.for_code(phrases.code))


def _gather(
    response: VoiceResponse, action: str, timeout: int, texts: Sequence[str], phrases: Phrases,
    voices: Voices,
) -> None:  # fmt: skip
    gather = response.gather(
        num_digits=1,
        action=action,
        method="POST",
        timeout=timeout,
        action_on_empty_result=True,  # no input comes back to us too, so we count the rounds
    )
    for text in texts:
        _say(gather, text, phrases, voices)


def call_twiml(
    problems: Sequence[Announcement],
    *,
    phrases: Phrases,
    voices: Voices,
    gather_url: str,
    gather_timeout: int,
    now: datetime,
    keys: Keys,
    newest_first: bool = False,
) -> str:
    """The document a call starts with: the alert, then the menu, inside one Gather so that a
    key pressed while the alert is still being read takes effect at once."""
    menu = phrases.menu(keys, bundle=len(problems) > 1)
    limit = TITLE_LIMIT
    while True:
        response = VoiceResponse()
        _gather(
            response,
            gather_url,
            gather_timeout,
            [spoken_alert(problems, phrases, now, limit, newest_first=newest_first), menu],
            phrases,
            voices,
        )
        xml = str(response)
        if len(xml) <= TWIML_LIMIT or limit <= 20:
            return xml
        limit //= 2


def menu_twiml(
    *, phrases: Phrases, voices: Voices, gather_url: str, gather_timeout: int, bundle: bool,
    keys: Keys, prefix: str | None = None,
) -> str:  # fmt: skip
    """The menu again (after no input, an invalid key, or a failure to take the key)."""
    response = VoiceResponse()
    texts = [t for t in (prefix, phrases.menu(keys, bundle=bundle)) if t]
    _gather(response, gather_url, gather_timeout, texts, phrases, voices)
    return str(response)


def after_key(text: str, *, phrases: Phrases, voices: Voices) -> str:
    """Say what happened, then hang up."""
    response = VoiceResponse()
    _say(response, text, phrases, voices)
    response.hangup()
    return str(response)


def voicemail_twiml(problem: Announcement, *, phrases: Phrases, voices: Voices) -> str:
    """A short message for an answering machine, after the beep."""
    text = phrases.voicemail.format(
        severity=phrases.severity[problem.severity],
        host=speakable(problem.host, HOST_LIMIT),
        title=_sentence(problem.title, TITLE_LIMIT),
    )
    return after_key(text, phrases=phrases, voices=voices)
