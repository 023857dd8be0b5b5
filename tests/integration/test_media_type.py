"""Our media type's own JavaScript, run in Duktape like Zabbix runs it, against a live ingest."""

from __future__ import annotations

import json
import subprocess
import sys

import nats
import pytest
import yaml

from yobidashi_common.events import AlertEvent
from yobidashi_common.subjects import ALERTS_STREAM
from yobidashi_harness.nats_server import NatsServer
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.media_type import (
    MEDIA_TYPE_YAML,
    load_media_type,
    resolve_parameters,
    run_script,
)

pytestmark = pytest.mark.integration

TOKEN = "media-type-test-token-123456"
REPO = MEDIA_TYPE_YAML.parents[3]

PROBLEM_MACROS = {
    "{EVENT.SOURCE}": "0",
    "{EVENT.ID}": "4242",
    "{EVENT.VALUE}": "1",
    "{EVENT.UPDATE.STATUS}": "0",
    "{EVENT.STATUS}": "PROBLEM",
    "{EVENT.NAME}": "ディスク使用率が90%を超えました",
    "{EVENT.DATE}": "2026.11.24",
    "{EVENT.TIME}": "03:12:09",
    "{EVENT.SEVERITY}": "Disaster",
    "{EVENT.NSEVERITY}": "5",
    "{EVENT.ACK.STATUS}": "No",
    "{EVENT.OPDATA}": "93 %",
    "{EVENT.TAGSJSON}": '[{"tag":"service","value":"db"},{"tag":"quote","value":"a\\"b"}]',
    "{TRIGGER.ID}": "23133",
    "{TRIGGER.NAME}": "ディスク使用率が90%を超えました",
    "{HOST.HOST}": "db01",
    "{HOST.NAME}": "db01 (東京)",
    "{TRIGGER.HOSTGROUP.NAME}": "Databases, Tokyo",
    "{USER.FULLNAME}": "Admin (Zabbix Administrator)",
    "{ALERT.SENDTO}": "090-1234-5678",
    "{ALERT.SUBJECT}": "Problem: ディスク",
    "{ALERT.MESSAGE}": "Problem started at 03:12:09",
    "{ESC.HISTORY}": "Problem started: 2026.11.24 03:12:09 Age: 0m",
}


@pytest.fixture
def ingest_env() -> dict[str, str]:
    """For conftest's ``ingest``. The test that stops NATS waits out the publish timeout
    before ingest answers 503: 1 s of it rather than the default 2 s."""
    return {"INGEST_TOKEN": TOKEN, "NATS_PUBLISH_TIMEOUT": "1"}


async def stored(url: str) -> list[AlertEvent]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(ALERTS_STREAM)
        out = []
        for seq in range(1, info.state.last_seq + 1):
            msg = await js.get_msg(ALERTS_STREAM, seq)
            out.append(AlertEvent.model_validate_json(msg.data or b""))
        return out
    finally:
        await nc.close()


def test_committed_yaml_embeds_the_current_script() -> None:
    check = [sys.executable, str(REPO / "deploy/zabbix/yobidashi/build_media_type.py"), "--check"]
    assert subprocess.run(check, check=False).returncode == 0, (
        "deploy/zabbix/media_yobidashi.yaml is stale: run `make media-type`"
    )
    media = load_media_type()
    assert media["script"] == (REPO / "deploy/zabbix/yobidashi/media_yobidashi.js").read_text()


def test_export_is_zabbix_6_0_format() -> None:
    export = yaml.safe_load(MEDIA_TYPE_YAML.read_text())["zabbix_export"]
    assert export["version"] == "6.0"
    media = export["media_types"][0]
    assert media["type"] == "WEBHOOK"
    names = [p["name"] for p in media["parameters"]]
    assert len(names) == len(set(names))
    assert {"URL", "token", "event_id", "sendto", "esc_history"} <= set(names)
    modes = {t["operation_mode"] for t in media["message_templates"]}
    assert modes == {"PROBLEM", "RECOVERY", "UPDATE"}


async def test_problem_reaches_ingest_and_is_stored(
    ingest: ServiceProcess, nats_server: NatsServer
) -> None:
    media = load_media_type()
    params = resolve_parameters(media, PROBLEM_MACROS, URL=f"{ingest.url}/v1/zabbix", token=TOKEN)
    run = run_script(media["script"], params)
    assert run.error is None, run.error
    # Process tags: the problem is tagged with its incident; no page address, no link.
    assert json.loads(str(run.result)) == {"tags": {"__yobidashi_incident": "zabbix:4242"}}
    request = run.requests[0]
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    # Macros that do not apply to a problem arrive as literal text; the script nulls them.
    assert params["recovery_event_id"] == "{EVENT.RECOVERY.ID}"
    assert body["recovery_event_id"] is None
    assert body["zabbix_url"] is None
    assert "token" not in body
    assert "URL" not in body
    assert body["event_tags"][1] == {"tag": "quote", "value": 'a"b'}
    [event] = await stored(nats_server.url)
    assert event.source_event_id == "4242"
    assert event.title == "ディスク使用率が90%を超えました"
    assert event.host == "db01 (東京)"
    assert event.sendto == "090-1234-5678"
    assert event.host_groups == ["Databases", "Tokyo"]
    assert event.severity.value == "disaster"


async def test_zabbix_retry_of_the_same_alert_is_stored_once(
    ingest: ServiceProcess, nats_server: NatsServer
) -> None:
    media = load_media_type()
    params = resolve_parameters(media, PROBLEM_MACROS, URL=f"{ingest.url}/v1/zabbix", token=TOKEN)
    for _ in range(3):
        assert run_script(media["script"], params).error is None
    assert len(await stored(nats_server.url)) == 1


def test_the_problem_links_to_its_incident_page_only_from_a_problem_notification(
    ingest: ServiceProcess,
) -> None:
    media = load_media_type()
    page = "https://yobidashi.example.com/incidents/"
    url = f"{ingest.url}/v1/zabbix"
    problem = resolve_parameters(media, PROBLEM_MACROS, URL=url, token=TOKEN, incident_page=page)
    assert json.loads(str(run_script(media["script"], problem).result))["tags"] == {
        "__yobidashi_incident": "zabbix:4242",
        "__yobidashi_url": "https://yobidashi.example.com/incidents/4242",
    }
    assert "incident_page" not in run_script(media["script"], problem).requests[0]["body"]
    recovery_macros = {
        **PROBLEM_MACROS,
        "{EVENT.VALUE}": "0",
        "{EVENT.RECOVERY.ID}": "4243",
        "{EVENT.STATUS}": "RESOLVED",
    }
    recovery = resolve_parameters(media, recovery_macros, URL=url, token=TOKEN, incident_page=page)
    assert json.loads(str(run_script(media["script"], recovery).result)) == {"tags": {}}
    assert media["process_tags"] == "YES"
    assert media["show_event_menu"] == "YES"
    assert media["event_menu_name"] == "Yobidashi"
    assert media["event_menu_url"] == "{EVENT.TAGS.__yobidashi_url}"


def test_wrong_token_throws_a_readable_error(ingest: ServiceProcess) -> None:
    media = load_media_type()
    params = resolve_parameters(
        media, PROBLEM_MACROS, URL=f"{ingest.url}/v1/zabbix", token="wrong-token"
    )
    run = run_script(media["script"], params)
    assert run.result is None
    assert run.error == (
        "Yobidashi notification failed: ingest answered HTTP 401: missing or wrong bearer token"
    )
    assert run.logs[0][0] == 3


def test_invalid_payload_throws_with_the_reason(ingest: ServiceProcess) -> None:
    media = load_media_type()
    macros = {**PROBLEM_MACROS, "{EVENT.NSEVERITY}": "9"}
    params = resolve_parameters(media, macros, URL=f"{ingest.url}/v1/zabbix", token=TOKEN)
    run = run_script(media["script"], params)
    assert run.error is not None
    assert "ingest answered HTTP 422: the payload has invalid fields" in run.error


def test_ingest_unavailable_throws_so_zabbix_retries(
    ingest: ServiceProcess, nats_server: NatsServer
) -> None:
    nats_server.stop()
    media = load_media_type()
    params = resolve_parameters(media, PROBLEM_MACROS, URL=f"{ingest.url}/v1/zabbix", token=TOKEN)
    run = run_script(media["script"], params)
    assert run.error is not None
    assert "ingest answered HTTP 503" in run.error


def test_unreachable_ingest_throws() -> None:
    media = load_media_type()
    params = resolve_parameters(
        media, PROBLEM_MACROS, URL="http://127.0.0.1:9/v1/zabbix", token=TOKEN
    )
    run = run_script(media["script"], params)
    assert run.error is not None
    assert "ingest answered HTTP 0" in run.error


@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        ({"URL": "<ingest URL, e.g. https://yobidashi.example.com/v1/zabbix>"}, '"URL" must be'),
        ({"URL": "http://127.0.0.1:9/v1/zabbix", "token": ""}, '"token" is empty'),
    ],
)
def test_unconfigured_parameters_are_explained(fixed: dict[str, str], message: str) -> None:
    media = load_media_type()
    params = resolve_parameters(media, PROBLEM_MACROS, **{"token": TOKEN, **fixed})
    run = run_script(media["script"], params)
    assert run.error is not None
    assert message in run.error
    assert run.requests == []


def test_non_trigger_events_are_refused() -> None:
    media = load_media_type()
    macros = {**PROBLEM_MACROS, "{EVENT.SOURCE}": "3"}
    params = resolve_parameters(media, macros, URL="http://127.0.0.1:9/v1/zabbix", token=TOKEN)
    run = run_script(media["script"], params)
    assert run.error is not None
    assert "only trigger events are supported" in run.error
