"""Everything a call says, in Japanese (ja-JP) and English (en-US).

Sentences are short and separated by full stops so that text-to-speech pauses between them;
an engineer woken at 3 a.m. hears severity, host and problem before anything else. The whole
vocabulary, every combination rendered, is in ``tests/data/spoken_vocabulary.txt`` (a
golden file): read it there, and review any change to it there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from yobidashi_common.events import Severity

Language = Literal["ja", "en"]

_USERNAME = re.compile(r"\s*\([^()]*\)$")


@dataclass(frozen=True)
class Keys:
    """The keys a callee may press (KEY_* settings); close and comment are optional."""

    acknowledge: str = "1"
    forward: str = "2"  # passes it on to the next person
    repeat: str = "*"
    close: str = ""
    comment: str = ""


def spoken_name(name: str) -> str:
    """A Zabbix full name reads "Taro Yamada (yamada)": say the name, not the login."""
    return _USERNAME.sub("", name).strip() or name


@dataclass(frozen=True)
class Phrases:
    code: str  # the <Say language=...> value
    joiner: str  # between sentences: nothing after 。, a space after "."
    severity: dict[Severity, str]
    intro: str
    alert: str  # {severity} {host} {title}
    bundle_intro: str  # {count} {worst}
    bundle_item: str  # {n} {host} {title}
    bundle_more: str  # {count}
    acknowledged: str
    passed: str
    invalid: str
    not_taken: str
    goodbye_no_input: str
    voicemail: str  # {severity} {host} {title}

    def age(self, elapsed: timedelta) -> str:
        raise NotImplementedError

    def started(self, elapsed: timedelta) -> str:
        raise NotImplementedError

    def menu(self, keys: Keys, *, bundle: bool) -> str:
        raise NotImplementedError

    def already_acknowledged(self, name: str | None, *, bundle: bool) -> str:
        raise NotImplementedError

    def already_resolved(self, *, bundle: bool) -> str:
        raise NotImplementedError

    def bundle_acknowledged(self, count: int) -> str:
        raise NotImplementedError


class Japanese(Phrases):
    def age(self, elapsed: timedelta) -> str:
        minutes = max(0, int(elapsed.total_seconds() // 60))
        if minutes < 1:
            return "たった今"
        if minutes < 60:
            return f"{minutes}分前"
        hours, minutes = divmod(minutes, 60)
        if hours < 24:
            return f"{hours}時間{minutes}分前" if minutes else f"{hours}時間前"
        return f"{hours // 24}日前"

    def started(self, elapsed: timedelta) -> str:
        age = self.age(elapsed)
        # 「たった今」 is an adverb: no に after it (「12分前に」, but 「たった今発生しました」).
        return f"{age}発生しました。" if age == "たった今" else f"{age}に発生しました。"

    @staticmethod
    def _key(key: str) -> str:
        return {"*": "アスタリスク", "#": "シャープ"}.get(key, key)

    def menu(self, keys: Keys, *, bundle: bool) -> str:
        choices = [
            ("すべて確認して対応する場合" if bundle else "対応する場合", keys.acknowledge),
            ("確認して障害をクローズする場合", keys.close),
            ("次の担当者に回す場合", keys.forward),
            ("確認せずにコメントだけ残す場合", keys.comment),
            ("もう一度聞く場合", keys.repeat),
        ]
        return "、".join(f"{when}は{self._key(key)}を" for when, key in choices if key) + (
            "押してください。"
        )

    def already_acknowledged(self, name: str | None, *, bundle: bool) -> str:
        what = "これらの障害" if bundle else "この障害"
        who = f"{spoken_name(name)}さん" if name else "別の担当者"
        return f"{what}は、すでに{who}が確認しています。ありがとうございました。"

    def already_resolved(self, *, bundle: bool) -> str:
        what = "これらの障害" if bundle else "この障害"
        return f"{what}は、すでに復旧しています。ありがとうございました。"

    def bundle_acknowledged(self, count: int) -> str:
        return f"{count}件すべての確認を受け付けました。よろしくお願いします。"


class English(Phrases):
    def age(self, elapsed: timedelta) -> str:
        minutes = max(0, int(elapsed.total_seconds() // 60))
        if minutes < 1:
            return "just now"
        if minutes < 60:
            return f"{_count(minutes, 'minute')} ago"
        hours, minutes = divmod(minutes, 60)
        if hours < 24:
            if minutes:
                return f"{_count(hours, 'hour')} and {_count(minutes, 'minute')} ago"
            return f"{_count(hours, 'hour')} ago"
        return f"{_count(hours // 24, 'day')} ago"

    def started(self, elapsed: timedelta) -> str:
        return f"It started {self.age(elapsed)}."

    @staticmethod
    def _key(key: str) -> str:
        return {"*": "star", "#": "pound"}.get(key, key)

    def menu(self, keys: Keys, *, bundle: bool) -> str:
        choices = [
            (keys.acknowledge, "to acknowledge all of them" if bundle else "to acknowledge"),
            (keys.close, "to acknowledge and close"),
            (
                keys.forward,
                "to pass them to the next person" if bundle else "to pass it to the next person",
            ),
            (keys.comment, "to only leave a note"),
            (keys.repeat, "to repeat"),
        ]
        said = [f"{self._key(key)} {what}" for key, what in choices if key]
        return f"Press {', '.join(said[:-1])}, or {said[-1]}."

    def already_acknowledged(self, name: str | None, *, bundle: bool) -> str:
        what = "These problems were" if bundle else "This problem was"
        who = spoken_name(name) if name else "another engineer"
        return f"{what} already acknowledged by {who}. Thank you."

    def already_resolved(self, *, bundle: bool) -> str:
        what = "These problems have" if bundle else "This problem has"
        return f"{what} already recovered. Thank you."

    def bundle_acknowledged(self, count: int) -> str:
        return f"{'Both' if count == 2 else f'All {count}'} problems acknowledged. Thank you."


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


JA = Japanese(
    code="ja-JP",
    joiner="",
    severity={
        Severity.NOT_CLASSIFIED: "未分類",
        Severity.INFORMATION: "情報",
        Severity.WARNING: "警告",
        Severity.AVERAGE: "軽度の障害",
        Severity.HIGH: "重度の障害",
        Severity.DISASTER: "致命的な障害",
    },
    intro="こちらはヨビダシです。障害のお知らせです。",
    alert="重要度、{severity}。ホスト、{host}。{title}。",
    bundle_intro="新しい障害が{count}件あります。最も重要度が高いものは、{worst}です。",
    bundle_item="{n}件目、ホスト{host}、{title}。",
    bundle_more="ほかに{count}件あります。",
    acknowledged="確認を受け付けました。ザビックスに記録します。よろしくお願いします。",
    passed="次の担当者に回します。ありがとうございました。",
    invalid="そのキーは使えません。",
    not_taken="キーを受け付けられませんでした。もう一度押してください。",
    goodbye_no_input="入力がなかったため、電話を切ります。",
    voicemail=(
        "こちらはヨビダシです。障害のお知らせです。重要度、{severity}。"
        "ホスト、{host}。{title}。確認をお願いします。"
    ),
)

EN = English(
    code="en-US",
    joiner=" ",
    severity={
        Severity.NOT_CLASSIFIED: "not classified",
        Severity.INFORMATION: "information",
        Severity.WARNING: "warning",
        Severity.AVERAGE: "average",
        Severity.HIGH: "high",
        Severity.DISASTER: "disaster",
    },
    intro="This is Yobidashi with an alert.",
    alert="Severity {severity}. Host {host}. {title}.",
    bundle_intro="You have {count} new problems. The highest severity is {worst}.",
    bundle_item="Number {n}: host {host}, {title}.",
    bundle_more="And {count} more.",
    acknowledged="Acknowledged. It will be recorded in Zabbix. Thank you.",
    passed="Passing this to the next person. Thank you.",
    invalid="That key is not valid.",
    not_taken="Sorry, that did not go through. Please press it again.",
    goodbye_no_input="No input received. Goodbye.",
    voicemail=(
        "This is Yobidashi with an alert. Severity {severity}. Host {host}. {title}. "
        "Please check it."
    ),
)

PHRASES: dict[Language, Phrases] = {"ja": JA, "en": EN}
