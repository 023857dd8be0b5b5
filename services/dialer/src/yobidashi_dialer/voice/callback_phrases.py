"""What a call *into* Yobidashi says besides the usual alert and menu (see `callback`)."""

from __future__ import annotations

from dataclasses import dataclass

from yobidashi_dialer.voice.phrases import Language


@dataclass(frozen=True)
class CallBackPhrases:
    # For anyone we will not read problems to: says nothing about who we are or who they are.
    neutral: str
    pin_prompt: str
    nothing_open: str


CALLBACK_PHRASES: dict[Language, CallBackPhrases] = {
    "ja": CallBackPhrases(
        neutral="この番号ではお電話を承っておりません。失礼いたします。",
        pin_prompt="暗証番号を入力し、最後にシャープを押してください。",
        nothing_open="現在、対応が必要な障害はありません。失礼いたします。",
    ),
    "en": CallBackPhrases(
        neutral="This number does not take calls. Goodbye.",
        pin_prompt="Please enter your PIN, then press the pound key.",
        nothing_open="There are no open problems for you right now. Goodbye.",
    ),
}
