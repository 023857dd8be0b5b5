"""The whole small loop against the real dev Zabbix, 6.0 and 7.0.

Problem webhook → acknowledge as ``yobidashi-acker`` with its API token → update webhook →
recovery webhook. Waits are generous; the timeout messages say what did not arrive.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_testing.zabbix_fixtures import every_zabbix_version

pytestmark = pytest.mark.zabbix

MEDIA_TYPE_YAML = Path(__file__).parent / "data" / "zabbix_dev_test_webhook.yaml"
WEBHOOK_TOKEN = "zbx-dev-test-token"
ACK_MESSAGE = "Test ack: 障害対応中"
# Problem/recovery webhooks take 2-4 s and updates 2-8 s here (fixed server cycles); leave room.
WEBHOOK_TIMEOUT = 90


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


class WebhookReceiver:
    """A tiny HTTP server that records every JSON POST and answers 200."""

    def __init__(self) -> None:
        inbox: queue.Queue[Received] = queue.Queue()
        self._inbox = inbox
        self.received: list[Received] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                inbox.put(Received(headers=dict(self.headers.items()), body=body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(
        self, description: str, match: Callable[[dict[str, Any]], bool], timeout: float
    ) -> Received:
        """The first webhook (received so far or later) whose body matches."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.received:
                if match(item.body):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                bodies = [r.body for r in self.received]
                raise TimeoutError(
                    f"no {description} webhook within {timeout} s; received so far: {bodies}"
                )
            try:
                self.received.append(self._inbox.get(timeout=min(remaining, 1.0)))
            except queue.Empty:
                continue

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


@every_zabbix_version
def test_problem_ack_update_recovery_loop(
    zabbix_dev: DevInstance, zabbix_admin: ZabbixRpc, receiver: WebhookReceiver
) -> None:
    names = zs.ScenarioNames.for_prefix("zbxdev-selftest")
    scenario = zs.provision(
        zabbix_admin,
        names,
        media_type_yaml=MEDIA_TYPE_YAML,
        media_parameters={"URL": receiver.url, "token": WEBHOOK_TOKEN},
        # Two steps: step 2 only if still unacknowledged after esc_period (60 s); we ack first.
        phones=("+15555550100", "+15555550101"),
    )
    port = zabbix_dev.server_port
    host, key = names.host, names.item_key
    zs.wait_for_config_sync(host, key, server_port=port, changed_at=scenario.changed_at)

    operations = zabbix_admin.call(
        "action.get", {"actionids": [scenario.actionid], "selectOperations": "extend"}
    )[0]["operations"]
    by_step = {int(op["esc_step_from"]): op for op in operations}
    assert by_step[1]["opconditions"] == []
    assert [c["conditiontype"] for c in by_step[2]["opconditions"]] == ["14"]

    baseline = zs.last_event_id(zabbix_admin, scenario.triggerid)
    zs.send(host, key, 10, server_port=port)
    problem = zs.wait_for_problem(zabbix_admin, scenario.triggerid, after_eventid=baseline)
    eventid = problem["eventid"]

    def is_(kind: str) -> Callable[[dict[str, Any]], bool]:
        def match(body: dict[str, Any]) -> bool:
            if body["event_id"] != eventid:
                return False
            if kind == "update":
                return bool(body["event_update_status"] == "1")
            value = "1" if kind == "problem" else "0"
            return bool(body["event_value"] == value and body["event_update_status"] == "0")

        return match

    first = receiver.wait_for("problem", is_("problem"), WEBHOOK_TIMEOUT)
    assert first.headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert first.body["sendto"] == "+15555550100"
    assert first.body["host"] == host
    assert first.body["trigger_name"] == names.trigger
    assert first.body["event_ack_status"] == "No"
    # CRLF, as the import stored it (test_imported_templates_line_endings).
    assert first.body["message"] == f"Problem {eventid} on {host}\r\nSeverity: High"
    zs.wait_for_alerts(
        zabbix_admin,
        eventid,
        lambda found: any(a["status"] == zs.ALERT_SENT for a in found),
        description="the problem alert marked sent (status 1)",
        mediatypeid=scenario.mediatypeid,
    )

    acker = ZabbixRpc(zabbix_dev.api_url, auth=scenario.acker_token.token)
    zs.acknowledge(acker, eventid, ACK_MESSAGE)
    event = zs.wait_for_acknowledged(zabbix_admin, eventid, message=ACK_MESSAGE)
    assert event["acknowledged"] == "1"
    ours = [a for a in event["acknowledges"] if a["message"] == ACK_MESSAGE]
    assert ours[0]["username"] == names.acker_user
    assert int(ours[0]["action"]) & zs.ACK_ACKNOWLEDGE

    update = receiver.wait_for("update (acknowledge)", is_("update"), WEBHOOK_TIMEOUT)
    assert update.body["event_update_message"] == ACK_MESSAGE
    assert update.body["event_ack_status"] == "Yes"

    zs.send(host, key, 0, server_port=port)
    recovery = receiver.wait_for("recovery", is_("recovery"), WEBHOOK_TIMEOUT)
    resolved = zs.wait_for_resolved(zabbix_admin, eventid)
    assert recovery.body["event_recovery_id"] == resolved["r_eventid"]
    assert zs.open_problems(zabbix_admin, scenario.triggerid) == []
    # Step 2's user was never paged: the ack came long before its 60 s.
    assert {r.body["sendto"] for r in receiver.received} == {"+15555550100"}


@every_zabbix_version
def test_provision_is_idempotent(
    zabbix_dev: DevInstance, zabbix_admin: ZabbixRpc, receiver: WebhookReceiver
) -> None:
    names = zs.ScenarioNames.for_prefix("zbxdev-idempotent")
    kwargs: dict[str, Any] = {
        "media_type_yaml": MEDIA_TYPE_YAML,
        "media_parameters": {"URL": receiver.url, "token": "one"},
    }
    first = zs.provision(zabbix_admin, names, **kwargs)
    kwargs["media_parameters"] = {"URL": receiver.url, "token": "two"}
    second = zs.provision(zabbix_admin, names, **kwargs)

    same = ("groupid", "hostid", "itemid", "triggerid", "mediatypeid", "actionid", "acker_userid")
    assert {f: getattr(second, f) for f in same} == {f: getattr(first, f) for f in same}
    assert second.oncall_userids == first.oncall_userids
    assert second.acker_token.tokenid == first.acker_token.tokenid
    assert second.acker_token.token != first.acker_token.token, "a new secret on each run"
    media = zabbix_admin.call(
        "mediatype.get", {"mediatypeids": [second.mediatypeid], "output": ["parameters"]}
    )[0]
    params = {p["name"]: p["value"] for p in media["parameters"]}
    assert params["token"] == "two"
    assert params["URL"] == receiver.url
    users = zabbix_admin.call(
        "user.get", {"userids": list(second.oncall_userids), "selectMedias": "extend"}
    )
    assert [len(u["medias"]) for u in users] == [1]
    # The old secret no longer works; the new one does.
    with pytest.raises(Exception, match="Not authorized"):
        ZabbixRpc(zabbix_admin.url, auth=first.acker_token.token).call("host.get", {"limit": 1})
    assert ZabbixRpc(zabbix_admin.url, auth=second.acker_token.token).call(
        "host.get", {"output": ["host"], "filter": {"host": [names.host]}}
    ) == [{"hostid": second.hostid, "host": names.host}]


@every_zabbix_version
def test_imported_templates_line_endings(zabbix_admin: ZabbixRpc) -> None:
    """configuration.import stores a template's newlines as CRLF and drops the last one.

    6.0 and 7.0 alike. The harness imports media types as they are, so tests see what a user's
    import gives, and the webhook gets {ALERT.MESSAGE} with those line endings.
    """
    mediatypeid = zs.import_media_type(
        zabbix_admin, MEDIA_TYPE_YAML, name="zbxdev-line-endings webhook"
    )
    templates = zabbix_admin.call(
        "mediatype.get",
        {"mediatypeids": [mediatypeid], "selectMessageTemplates": "extend", "output": ["name"]},
    )[0]["message_templates"]
    problem = next(t for t in templates if t["eventsource"] == "0" and t["recovery"] == "0")
    assert problem["message"] == "Problem {EVENT.ID} on {HOST.NAME}\r\nSeverity: {EVENT.SEVERITY}"
