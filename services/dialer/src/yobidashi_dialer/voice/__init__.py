"""What a call says, per language, as TwiML."""

from yobidashi_dialer.voice.phrases import PHRASES, Keys, Language, Phrases
from yobidashi_dialer.voice.twiml import (
    Announcement,
    Voices,
    after_key,
    call_twiml,
    menu_twiml,
    spoken_alert,
    voicemail_twiml,
)

__all__ = [
    "PHRASES",
    "Announcement",
    "Keys",
    "Language",
    "Phrases",
    "Voices",
    "after_key",
    "call_twiml",
    "menu_twiml",
    "spoken_alert",
    "voicemail_twiml",
]
