"""A problem's escalation as a page for people: what Zabbix's event menu opens.

The media type tags each problem with its incident (``__yobidashi_incident``) and, where the
admin gave the page's address, with a link to here (``__yobidashi_url``), shown as the
"Yobidashi" entry of the event menu. The page reads the problem, then its calls and its
timeline, in Japanese or English (``?lang=``, else the browser's Accept-Language). Like the
``/v1/`` API it is for the inside of the network, and it shows masked numbers only.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from yobidashi_dialer.core.engine import Engine
from yobidashi_dialer.core.model import Incident, Page

Lang = Literal["ja", "en"]

# The timeline's event names, as decide and escalation write them.
_WHAT: dict[str, str] = {
    "calling": "発信",
    "answered": "応答",
    "answering machine": "留守番電話",
    "busy": "話し中",
    "no-answer": "応答なし",
    "call ended": "通話終了",
    "call ended at once": "発信直後に終了",
    "call failed": "発信失敗",
    "call stopped": "呼び出し停止",
    "already calling": "呼び出し中",
    "acknowledged by phone": "電話で確認",
    "passed": "次の担当者へ",
    "key pressed": "キー入力",
    "resolved": "復旧",
    "closed in Zabbix": "Zabbix でクローズ",
    "acknowledged in Zabbix": "Zabbix で確認",
    "unacknowledged in Zabbix": "Zabbix で確認取り消し",
    "comment in Zabbix": "Zabbix のコメント",
    "severity changed": "重要度の変更",
    "Zabbix confirmed": "Zabbix に反映",
    "Zabbix acknowledged": "Zabbix に確認を記録",
    "Zabbix already acknowledged": "Zabbix で確認済み",
    "Zabbix commented": "Zabbix にコメントを記録",
    "Zabbix acknowledgement failed": "Zabbix への記録失敗",
    "escalation started": "エスカレーション開始",
    "nobody on call": "担当者なし",
    "unknown contact": "不明な連絡先",
    "fallback": "最終連絡先",
    "fallback missing": "最終連絡先なし",
    "policy exhausted": "エスカレーション終了",
    "not calling": "発信せず",
    "notification ignored": "通知を無視",
    "duplicate notification": "重複通知",
}
_STEP = re.compile(r"^step (\d+)$")

_CSS = """
body{font:14px/1.5 system-ui,"IPAGothic","Noto Sans CJK JP",sans-serif;margin:0}
body{color:#1d232a;background:#f4f6f8}
header{background:#14202b;color:#fff;padding:14px 22px}
header h1{margin:0;font-size:19px}
main{padding:18px 22px;max-width:1000px}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid #dde2e7;vertical-align:top}
h2{font-size:13px;text-transform:uppercase;color:#68727d;margin:22px 0 8px}
.badge{padding:2px 9px;border-radius:10px;font-size:12px;font-weight:700;background:#eef1f4}
.badge.open{background:#fdecea;color:#c0392b}
.badge.acknowledged{background:#e7f6ed;color:#1f8a4c}
ol{list-style:none;padding:0;margin:0;background:#fff}
li{padding:4px 10px;border-bottom:1px solid #dde2e7}
time,.num{color:#68727d;font-variant-numeric:tabular-nums}
.empty{color:#68727d}
"""

_STATUS = {
    "open": ("対応待ち", "open"),
    "acknowledged": ("確認済み", "acknowledged"),
    "resolved": ("復旧", "resolved"),
    "exhausted": ("エスカレーション終了", "exhausted"),
}
_PAGE_STATUS = {
    "queued": "待機",
    "dialling": "発信中",
    "waiting": "再発信待ち",
    "ringing": "呼び出し中",
    "answered": "通話中",
    "acknowledged": "確認",
    "passed": "次へ",
    "reached": "応答のみ",
    "unreached": "不通",
    "cancelled": "停止",
}
_TEXT = {
    "title": ("Yobidashi 呼び出し", "Yobidashi"),
    "status": ("状態", "Status"),
    "severity": ("重要度", "Severity"),
    "host": ("ホスト", "Host"),
    "started": ("発生", "Started"),
    "event": ("イベント", "Event"),
    "acked": ("確認", "Acknowledged"),
    "via": ("経由", "via"),
    "calls": ("呼び出し", "Calls"),
    "timeline": ("経過", "Timeline"),
    "step": ("ステップ", "Step"),
    "who": ("担当者", "Who"),
    "attempt": ("回目", "Attempt"),
    "outcome": ("結果", "Outcome"),
    "none": ("まだありません", "None yet"),
    "not_found": ("この障害は Yobidashi にありません", "Yobidashi has no incident for this"),
    "at": ("時刻", "Time"),
    "what": ("出来事", "What"),
    "detail": ("詳細", "Detail"),
}


def language(explicit: str | None, accept_language: str | None) -> Lang:
    if explicit in ("ja", "en"):
        return explicit  # type: ignore[return-value]
    first = (accept_language or "").split(",")[0].strip().lower()
    return "ja" if first.startswith("ja") else "en"


def _t(key: str, lang: Lang) -> str:
    ja, en = _TEXT[key]
    return ja if lang == "ja" else en


def _what(what: str, lang: Lang) -> str:
    if lang == "en":
        return what
    if step := _STEP.match(what):
        return f"ステップ {step.group(1)}"
    return _WHAT.get(what, what)


def _when(at: datetime | None, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z") if at else "–"


def _who(page: Page) -> str:
    return page.contact.name or page.contact.masked_number


def _page_status(page: Page, lang: Lang) -> str:
    status = page.status.value
    return _PAGE_STATUS.get(status, status) if lang == "ja" else status


def _step(page: Page, incident: Incident) -> str:
    # Policy steps count from 0 within rounds; a Zabbix-driven page is its notification's number.
    return f"{page.round + 1}-{page.step + 1}" if incident.escalation else f"#{page.step}"


def render(incident: Incident, lang: Lang, zone: ZoneInfo) -> str:
    """The page; every value from Zabbix or a callee is escaped."""
    e = escape
    status_ja, status_en = _STATUS.get(incident.status.value, (incident.status.value,) * 2)
    status = status_ja if lang == "ja" else status_en
    acked = ""
    if incident.acked_at is not None:
        acked = (
            f"<tr><th>{_t('acked', lang)}</th><td>{e(incident.acked_by or '–')} "
            f"({_t('via', lang)} {e(incident.acked_via or '–')}), "
            f"{_when(incident.acked_at, zone)}</td></tr>"
        )
    calls = "".join(
        f"<tr><td>{_step(p, incident)}</td>"
        f"<td>{e(_who(p))} <span class=num>{e(p.contact.masked_number)}</span></td>"
        f"<td>{p.attempt}</td>"
        f"<td class=status-{p.status.value}>{e(_page_status(p, lang))}</td>"
        f"<td>{e(p.outcome or '')}</td></tr>"
        for p in incident.pages
    )
    timeline = "".join(
        f"<li><time>{_when(t.at, zone)}</time> <b>{e(_what(t.what, lang))}</b> "
        f"<span>{e(t.detail)}</span></li>"
        for t in incident.timeline
    )
    none = f"<p class=empty>{_t('none', lang)}</p>"
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(incident.title)} · {_t("title", lang)}</title>
<style>
{_CSS}</style></head>
<body><header><h1>{e(incident.title)}</h1>
<span class="badge {incident.status.value}" id=status>{e(status)}</span></header>
<main>
<table id=problem>
<tr><th>{_t("severity", lang)}</th><td>{e(incident.severity.value)}</td></tr>
<tr><th>{_t("host", lang)}</th><td>{e(incident.host)}</td></tr>
<tr><th>{_t("started", lang)}</th><td>{_when(incident.started_at, zone)}</td></tr>
<tr><th>{_t("event", lang)}</th><td>{e(incident.problem.source_event_id)}</td></tr>
{acked}
</table>
<h2>{_t("calls", lang)}</h2>
{
        f'''<table id=calls><tr><th>{_t("step", lang)}</th><th>{_t("who", lang)}</th>
<th>{_t("attempt", lang)}</th><th>{_t("status", lang)}</th><th>{_t("outcome", lang)}</th></tr>
{calls}</table>'''
        if calls
        else none
    }
<h2>{_t("timeline", lang)}</h2>
{f"<ol id=timeline>{timeline}</ol>" if timeline else none}
</main></body></html>
"""


def router(engine: Engine, zone: ZoneInfo) -> APIRouter:
    routes = APIRouter(tags=["pages"])

    @routes.get(
        "/incidents/{problem_key}",
        response_class=HTMLResponse,
        summary="A problem's escalation, for people (Zabbix's event menu links here)",
    )
    async def incident_page(
        problem_key: str,
        request: Request,
        lang: Literal["ja", "en"] | None = Query(None, description="default: Accept-Language"),
    ) -> HTMLResponse:
        chosen = language(lang, request.headers.get("accept-language"))
        key = problem_key if ":" in problem_key else f"zabbix:{problem_key}"
        incident = await engine.load(key)
        if incident is None:
            body = (
                f'<!doctype html><html lang="{chosen}"><meta charset="utf-8">'
                f"<p>{_t('not_found', chosen)}: {escape(key)}</p></html>"
            )
            return HTMLResponse(body, status_code=404)
        return HTMLResponse(render(incident, chosen, zone))

    return routes
