"""Everything a call says, in Japanese (ja-JP) and English (en-US).

Sentences are short and separated by full stops so that text-to-speech pauses between them;
an engineer woken at 3 a.m. hears severity, host and problem before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from yobidashi_common.events import Severity

Language = Literal["ja", "en"]


@dataclass(frozen=True)
class Phrases:
    code: str  # the <Say language=...> value
    joiner: str  # between sentences: nothing after 。, a space after "."
    severity: dict[Severity, str]
    intro: str
    alert: str  # {severity} {host} {title}
    started: str  # {age}
    bundle_intro: str  # {count} {worst}
    bundle_item: str  # {n} {host} {title}
    bundle_more: str  # {count}
    menu: str
    bundle_menu: str
    acknowledged: str
    bundle_acknowledged: str  # {count}
    already_acknowledged: str  # {name}
    already_resolved: str
    passed: str
    invalid: str
    not_taken: str
    goodbye_no_input: str
    voicemail: str  # {severity} {host} {title}

    def age(self, elapsed: timedelta) -> str:
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


class English(Phrases):
    def age(self, elapsed: timedelta) -> str:
        minutes = max(0, int(elapsed.total_seconds() // 60))
        if minutes < 1:
            return "just now"
        if minutes < 60:
            return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
        hours, minutes = divmod(minutes, 60)
        if hours < 24:
            h = f"{hours} hour{'s' if hours != 1 else ''}"
            return f"{h} {minutes} minutes ago" if minutes else f"{h} ago"
        days = hours // 24
        return f"{days} day{'s' if days != 1 else ''} ago"


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
    started="{age}に発生しました。",
    bundle_intro="新しい障害が{count}件あります。最も重いものは{worst}です。",
    bundle_item="{n}件目、ホスト{host}、{title}。",
    bundle_more="ほか{count}件。",
    menu=(
        "対応する場合は1を、次の担当者に回す場合は2を、"
        "もう一度聞く場合はアスタリスクを押してください。"
    ),
    bundle_menu=(
        "すべて確認して対応する場合は1を、次の担当者に回す場合は2を、"
        "もう一度聞く場合はアスタリスクを押してください。"
    ),
    acknowledged="確認を受け付けました。ザビックスに記録します。よろしくお願いします。",
    bundle_acknowledged="{count}件すべての確認を受け付けました。よろしくお願いします。",
    already_acknowledged="この障害は、すでに{name}さんが確認済みです。ありがとうございました。",
    already_resolved="この障害は、すでに復旧しています。ありがとうございました。",
    passed="次の担当者に回します。ありがとうございました。",
    invalid="そのキーは使えません。",
    not_taken="ただいま受け付けられませんでした。もう一度押してください。",
    goodbye_no_input="入力がないため、電話を切ります。",
    voicemail=(
        "こちらはヨビダシです。重要度、{severity}の障害が発生しています。"
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
    started="It started {age}.",
    bundle_intro="You have {count} new problems. The worst is {worst}.",
    bundle_item="Number {n}: host {host}, {title}.",
    bundle_more="And {count} more.",
    menu="Press 1 to acknowledge, 2 to pass it to the next person, or star to repeat.",
    bundle_menu=(
        "Press 1 to acknowledge all of them, 2 to pass them to the next person, or star to repeat."
    ),
    acknowledged="Acknowledged. It will be recorded in Zabbix. Thank you.",
    bundle_acknowledged="All {count} problems acknowledged. Thank you.",
    already_acknowledged="This problem was already acknowledged by {name}. Thank you.",
    already_resolved="This problem has already recovered. Thank you.",
    passed="Passing it to the next person. Thank you.",
    invalid="That key is not valid.",
    not_taken="Sorry, that did not go through. Please press it again.",
    goodbye_no_input="No input received. Goodbye.",
    voicemail=(
        "This is Yobidashi. A {severity} problem needs attention. Host {host}. {title}. "
        "Please check it."
    ),
)

PHRASES: dict[Language, Phrases] = {"ja": JA, "en": EN}
