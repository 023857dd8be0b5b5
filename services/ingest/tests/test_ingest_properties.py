"""Hostile input for ingest: whatever Zabbix (or anyone holding the token) sends, the answer is
a valid `AlertEvent` or a clean 422 naming the problem. Never another exception, never a 500.

Property-based (hypothesis). The pure normaliser is driven directly; the HTTP endpoint runs
in-process against a real nats-server, and everything it stored is read back at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from yobidashi_common.events import AlertEvent, AlertStatus
from yobidashi_harness import payloads
from yobidashi_harness.nats_server import NatsServer
from yobidashi_ingest.app import create_app
from yobidashi_ingest.settings import IngestSettings
from yobidashi_ingest.zabbix import (
    FROM_JSON_BYTES,
    TITLE_MAX,
    NormalizationError,
    ZabbixWebhook,
    _zabbix_time,
    to_alert_event,
    unresolved_to_none,
)
from yobidashi_testing.stack import stored_alerts

NOW = datetime(2026, 11, 24, 18, 50, tzinfo=UTC)
TOKEN = "property-ingest-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 64 * 1024
FIELDS = sorted(ZabbixWebhook.model_fields)
SURROGATE = re.compile("[\ud800-\udfff]")

# -- strategies ---------------------------------------------------------------------------------

# Every code point, surrogates and control characters included (nothing blacklisted).
any_char = st.characters(blacklist_categories=())
hostile_text = st.text(alphabet=any_char, max_size=60)
macros = st.sampled_from(
    [
        "{EVENT.ID}",
        "{EVENT.NSEVERITY}",
        "{EVENT.RECOVERY.ID}",
        "{ALERT.SENDTO}",
        "{$SECRET.MACRO}",
        "{?last(/web01/system.cpu.load)}",
        "{EVENT.TAGS.service}",
        "{ITEM.VALUE1}",
        "{#LLD.MACRO}",
        "*UNKNOWN*",
        "*UNKNOWN",
        "{TRIGGER.NAME",
        "  ",
        "",
    ]
)
xml_meta = st.sampled_from(
    ["<Say>", "</Response>", "&amp;", "&", "]]>", "<?xml?>", "<!--", "\"'", "<Hangup/>"]
)
huge = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["x", "障", "&<", "\x00", "\ud800", "😀", "9", " "]),
    st.sampled_from([1_000, 5_000, 20_000, MAX_BODY]),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-2, max_value=7).map(str),
    st.sampled_from(["١٢٣", "²", "--1", "1.0", "0x1", "1e3", "9" * 25, " 4 ", "4\x00"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
scalars = st.one_of(
    st.none(),
    hostile_text,
    macros,
    xml_meta,
    numbers,
    st.builds(lambda a, b, c: a + b + c, hostile_text, xml_meta, hostile_text),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)
tags = st.one_of(
    st.lists(
        st.fixed_dictionaries({"tag": scalars}, optional={"value": scalars}) | json_values,
        max_size=4,
    ),
    hostile_text,
    st.lists(st.fixed_dictionaries({"tag": hostile_text, "value": hostile_text}), max_size=3).map(
        json.dumps
    ),
    st.just("[" * 5000 + "]" * 5000),  # JSON inside a string, nested beyond the parser's limit
)
field_value = st.one_of(scalars, scalars, json_values, huge)
base_bodies = st.one_of(
    st.builds(payloads.problem, event_id=st.integers(0, 10**20)),
    st.builds(payloads.recovery, event_id=st.integers(0, 99)),
    st.builds(payloads.update, event_id=st.integers(0, 99), action=hostile_text | macros),
)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A realistic body with some fields replaced by something hostile, some removed and some
    unknown fields added; shrinks towards the realistic body."""
    body: dict[str, Any] = draw(base_bodies)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        body[name] = draw(tags if name == "event_tags" else field_value)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body.pop(name, None)
    body.update(draw(st.dictionaries(hostile_text, field_value, max_size=2)))
    return body


# -- the pure function --------------------------------------------------------------------------


def normalize(body: object) -> AlertEvent | ValidationError | NormalizationError:
    """The documented outcomes, returned; anything else raises and fails the test."""
    try:
        payload = ZabbixWebhook.model_validate(body)
    except ValidationError as exc:
        return exc
    try:
        return to_alert_event(
            payload,
            received_at=NOW,
            timezone=ZoneInfo("Asia/Tokyo"),
            own_users=["yobidashi-acker"],
            own_marker="via Yobidashi",
            zabbix_url="https://zabbix.example.jp",
        )
    except NormalizationError as exc:
        return exc


def check_event(event: AlertEvent) -> None:
    """What every consumer relies on: it survives the bus, and its ids are plain ASCII."""
    wire = event.to_bytes()  # what bus.publish stores; must not raise
    assert AlertEvent.model_validate_json(wire) == event
    assert re.fullmatch(r"[0-9]{1,20}", event.source_event_id), event.source_event_id
    assert event.problem_key == f"zabbix:{event.source_event_id}"
    # The dedup key travels as the Nats-Msg-Id header: printable ASCII, no spaces.
    assert re.fullmatch(r"[\x21-\x7e]+", event.dedup_key), event.dedup_key
    assert event.title
    assert len(event.title) <= TITLE_MAX
    assert event.host
    assert event.status in AlertStatus


@settings(max_examples=200, deadline=None)
@given(hostile_bodies())
@example(payloads.problem(name="disk \ud800 full"))
@example(payloads.update(user="\udfff", event_tags='[{"tag": "\\ud800"}]'))
@example(payloads.problem(event_id="١٢٣"))
@example(payloads.problem(event_tags="[" * 5000))
def test_any_body_is_an_alert_event_or_a_field_error(body: dict[str, Any]) -> None:
    outcome = normalize(body)
    event(type(outcome).__name__)  # --hypothesis-show-statistics shows the mix
    if isinstance(outcome, ValidationError):
        errors = outcome.errors(include_url=False)
        assert errors
        for error in errors:
            assert error["loc"], error
            assert str(error["loc"][0]) in FIELDS, error
    elif isinstance(outcome, NormalizationError):
        assert outcome.field in FIELDS
        assert outcome.message
    else:
        check_event(outcome)


@settings(max_examples=200, deadline=None)
@given(json_values | st.lists(json_values, max_size=3))
def test_anything_that_is_not_a_body_is_a_validation_error(value: object) -> None:
    outcome = normalize(value)
    if isinstance(outcome, AlertEvent):
        check_event(outcome)
    else:
        assert isinstance(outcome, ValidationError | NormalizationError)


@settings(max_examples=200, deadline=None)
@given(
    title=st.text(alphabet=any_char, min_size=1, max_size=3 * TITLE_MAX),
    host=st.text(alphabet=any_char, min_size=1, max_size=300),
    sendto=st.text(alphabet=any_char, max_size=40),
)
@example(title="\ud800 down", host="db\udc0001", sendto="090-1234-5678")
def test_arbitrary_text_in_the_spoken_fields_is_carried_not_refused(
    title: str, host: str, sendto: str
) -> None:
    """A title or host full of control characters, surrogates or markup is still a page: an
    alert must not be lost because of what a trigger's name contains."""
    body = payloads.problem(name=title, host=host, sendto=sendto)
    outcome = normalize(body)
    assert isinstance(outcome, AlertEvent), outcome
    check_event(outcome)
    if unresolved_to_none(title) is not None and not SURROGATE.search(title):
        cut = title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"
        assert outcome.title == cut
    if unresolved_to_none(host) is not None and not SURROGATE.search(host):
        assert outcome.host == host


def test_surrogates_and_deep_nesting_examples() -> None:
    """Fixed examples of what hypothesis found, kept so they never come back."""
    lone = normalize(payloads.problem(name="disk \ud800 full", host="db\udfff01"))
    assert isinstance(lone, AlertEvent)
    check_event(lone)
    assert "\ufffd" in lone.title
    nested = normalize(payloads.problem(event_tags="[" * 5000 + "]" * 5000))
    assert isinstance(nested, ValidationError)
    assert nested.errors()[0]["loc"][0] == "event_tags"
    unicode_digits = normalize(payloads.problem(event_id="١٢٣"))
    assert isinstance(unicode_digits, ValidationError)


@given(hostile_text.filter(SURROGATE.search), st.booleans())
@example("\ud800", True)
@example("ok \udfff", False)
def test_json_bytes_never_carry_a_lone_surrogate_to_the_model(text: str, ascii_only: bool) -> None:
    """The endpoint validates JSON bytes without the surrogate walk (FROM_JSON_BYTES): that is
    right only while the JSON parser refuses a lone surrogate, as an escape or as raw bytes."""
    body = json.dumps({"event_id": "1", "event_name": text}, ensure_ascii=ascii_only)
    with pytest.raises(ValidationError) as refused:
        ZabbixWebhook.model_validate_json(
            body.encode("utf-8", "surrogatepass"), context={FROM_JSON_BYTES: True}
        )
    assert refused.value.errors()[0]["type"] == "json_invalid"


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)))
def test_zabbix_dates_read_as_strptime_reads_them(moment: datetime) -> None:
    tz = ZoneInfo("Asia/Tokyo")
    for date, time in [
        (moment.strftime("%Y.%m.%d"), moment.strftime("%H:%M:%S")),
        (
            f"{moment.year}.{moment.month}.{moment.day}",
            f"{moment.hour}:{moment.minute}:{moment.second}",
        ),
    ]:
        expected = datetime.strptime(f"{date} {time}", "%Y.%m.%d %H:%M:%S").replace(tzinfo=tz)
        assert _zabbix_time(date, time, tz) == expected


@pytest.mark.parametrize(
    ("date", "time"),
    [("2026.02.30", "00:00:00"), ("2026.11.24", "24:00:00"), ("24.11.2026", "18:49:47"),
     ("2026.11.24", "18:49"), ("{EVENT.DATE}", "{EVENT.TIME}"), ("2026.11.24 ", "18:49:47")],
)  # fmt: skip
def test_what_is_not_a_zabbix_date_is_no_date(date: str, time: str) -> None:
    assert _zabbix_time(date, time, ZoneInfo("Asia/Tokyo")) is None


# -- the HTTP endpoint --------------------------------------------------------------------------


class Ingest:
    """The app in-process on an event loop in a helper thread, so that hypothesis (which runs
    synchronous test functions) can post to it; a real nats-server stores what it accepts."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self.portal = portal
        self.http = http

    def post(self, content: bytes, headers: dict[str, str]) -> httpx.Response:
        async def send() -> httpx.Response:
            return await self.http.post("/v1/zabbix", content=content, headers=headers)

        return self.portal.call(send)


@asynccontextmanager
async def running(url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings_ = IngestSettings.model_validate(
        {
            "nats_url": url,
            "ingest_token": TOKEN,
            "nats_publish_timeout": 5.0,
            "ingest_max_body_bytes": MAX_BODY,
        }
    )
    app = create_app(settings_)
    async with app.router.lifespan_context(app):
        await app.state.bus.wait_ready()
        # raise_app_exceptions=False: a crash must show up as the 500 Zabbix would get.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield http


@pytest.fixture
def ingest(nats_server: NatsServer) -> Iterator[Ingest]:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running(nats_server.url)) as http,
    ):
        yield Ingest(portal, http)


def check_answer(status: int, body: bytes, accepted: list[str]) -> None:
    assert status < 500, f"{status}: {body[:500]!r}"
    assert status in (202, 413, 422), f"{status}: {body[:500]!r}"
    answer = json.loads(body)
    if status == 202:
        assert set(answer) == {"id", "duplicate", "problem_key", "status"}
        if not answer["duplicate"]:
            accepted.append(answer["id"])
        return
    assert answer["error"] in {"invalid_json", "invalid_payload", "too_large"}, answer
    assert answer["message"]
    if answer["error"] == "invalid_payload" and answer["message"] != "body must be a JSON object":
        assert answer["details"], answer  # names the field(s)
        for detail in answer["details"]:
            assert detail["message"]
            assert detail["field"].split(".")[0] in FIELDS, detail


@pytest.mark.integration
def test_the_endpoint_answers_any_body_with_202_or_a_clean_4xx(
    ingest: Ingest, nats_server: NatsServer
) -> None:
    accepted: list[str] = []

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(hostile_bodies())
    @example(payloads.problem(name="disk \ud800 full", host="\udfff"))
    @example(payloads.problem(event_tags='[{"tag": "\\ud800"}]'))
    @example(payloads.problem(event_id="١٢٣"))
    def post_json(body: dict[str, Any]) -> None:
        # What a JSON client sends: lone surrogates as \ud800 escapes, which is valid JSON.
        raw = json.dumps(body).encode()
        response = ingest.post(raw, AUTH)
        check_answer(response.status_code, response.content, accepted)

    @settings(max_examples=100, deadline=None)
    @given(
        st.one_of(
            st.binary(max_size=200),
            st.text(alphabet=any_char, max_size=200).map(
                lambda t: t.encode("utf-8", "surrogatepass")
            ),
            st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
            st.integers(1, 20_000).map(lambda n: b'{"event_id": "1", "x": ' + b"[" * n),
            json_values.map(lambda v: json.dumps(v).encode()),
            hostile_bodies().map(lambda b: json.dumps(b).encode("utf-16")),
        )
    )
    @example(b"[" * 60_000)
    @example(b'{"event_id": "1", "event_tags": "' + b"[" * 50_000 + b'"}')
    @example(json.dumps(payloads.problem(message="\ud800")).encode("utf-16"))
    def post_bytes(raw: bytes) -> None:
        response = ingest.post(raw, AUTH)
        check_answer(response.status_code, response.content, accepted)

    post_json()
    post_bytes()
    stored = asyncio.run(stored_alerts(nats_server.url))
    # Everything answered 202 (and not a duplicate) was stored once, and decodes.
    assert sorted(e.dedup_key for e in stored) == sorted(accepted)
    for alert in stored:
        check_event(alert)


@pytest.mark.integration
def test_wrong_tokens_are_401_whatever_the_body(ingest: Ingest) -> None:
    @settings(max_examples=50, deadline=None)
    @given(
        header=st.one_of(
            st.none(),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
            st.just(f"Bearer {TOKEN}x"),
            st.just(f"Bearer {TOKEN[:-1]}"),
            st.just(f"Basic {TOKEN}"),
            st.just(f"Bearer\t{TOKEN}\x7f"),
        ),
        body=hostile_bodies(),
    )
    def post(header: str | None, body: dict[str, Any]) -> None:
        headers = {} if header is None else {"Authorization": header}
        response = ingest.post(json.dumps(body).encode(), headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"

    post()
