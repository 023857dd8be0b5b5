"""Proof, against the real Zabbix 6.0, that ingest's dedup key collapses exactly Zabbix's retries.

A webhook receiver that answers 503 to the first delivery of every body makes Zabbix retry each
alert. The action notifies two recipients at step 1 and one of them again at step 2; then the
problem is acknowledged (update alerts) and recovers (recovery alerts). Zabbix's own alert table
is the ground truth: every alert must map to exactly one dedup key, retries included, and no two
alerts may share one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.nats_server import free_port
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_ingest.zabbix import ZabbixWebhook, dedup_key, status_of
from yobidashi_testing.media_type import MEDIA_TYPE_YAML
from yobidashi_twilio_sim.testing import serve_app

pytestmark = [pytest.mark.e2e, pytest.mark.zabbix, pytest.mark.integration]

PREFIX = "dedup-proof"


class FlakyReceiver:
    """Answers 503 the first time it sees a body, 202 after: every alert is retried once."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.app = FastAPI()
        self.app.add_api_route("/v1/zabbix", self.receive, methods=["POST"])

    async def receive(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
        if canonical in self.seen:
            return Response(status_code=202)
        self.seen.add(canonical)
        return Response(status_code=503, headers={"Retry-After": "5"})


def provision(rpc: ZabbixRpc, url: str) -> tuple[str, str, str, str]:
    """Host, trigger, media type (retry every 5 s), and an action: step 1 to A and B, step 2
    to A again. Returns (host, key, triggerid, mediatypeid)."""
    groupid = zs.ensure_host_group(rpc, f"{PREFIX} hosts")
    host, key = f"{PREFIX}-host", "yobidashi.dedup.value"
    hostid = zs.ensure_host(rpc, host, groupid)
    zs.ensure_trapper_item(rpc, hostid, key)
    triggerid = zs.ensure_trigger(rpc, hostid, f"{PREFIX} value high", f"last(/{host}/{key})>5")
    mediatypeid = zs.import_media_type(rpc, MEDIA_TYPE_YAML, name=f"{PREFIX} webhook")
    zs.set_media_type_parameters(rpc, mediatypeid, {"URL": url, "token": "not-checked-here"})
    rpc.call("mediatype.update", {"mediatypeid": mediatypeid, "attempt_interval": "5s"})
    oncall = zs.ensure_user_group(rpc, f"{PREFIX} on-call", [groupid])
    users = []
    for name, phone in (("a", "+819022220001"), ("b", "+819022220002")):
        userid = zs.ensure_user(rpc, zs.UserSpec(username=f"{PREFIX}-{name}", usrgrpids=[oncall]))
        zs.set_user_media(rpc, userid, zs.Media(mediatypeid=mediatypeid, sendto=phone))
        users.append(userid)
    a, b = users
    steps = [zs.EscalationStep([a, b]), zs.EscalationStep([a])]
    operations = zs.action_operations(mediatypeid, steps)
    zs.ensure_action(rpc, f"{PREFIX} action", groupid, operations, esc_period="60s")
    return host, key, triggerid, mediatypeid


def key_of(body: dict[str, Any]) -> str:
    payload = ZabbixWebhook.model_validate(body)
    return dedup_key(payload, status_of(payload))


async def test_dedup_key_is_one_per_zabbix_alert_retries_included(
    zabbix_dev: DevInstance,
) -> None:
    rpc = ZabbixRpc(zabbix_dev.api_url)
    rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
    receiver = FlakyReceiver()
    port = free_port()
    async with serve_app(receiver.app, port=port):
        host, key, triggerid, mediatypeid = await asyncio.to_thread(
            provision, rpc, f"http://127.0.0.1:{port}/v1/zabbix"
        )
        await asyncio.to_thread(
            zs.wait_for_config_sync, host, key, server_port=zabbix_dev.server_port,
            changed_at=time.time(),
        )  # fmt: skip
        baseline = zs.last_event_id(rpc, triggerid)
        zs.send(host, key, 10, server_port=zabbix_dev.server_port)
        eventid = zs.wait_for_problem(rpc, triggerid, after_eventid=baseline)["eventid"]

        def sent(count: int, what: str) -> list[dict[str, Any]]:
            return zs.wait_for_alerts(
                rpc,
                eventid,
                lambda alerts: sum(a["status"] == zs.ALERT_SENT for a in alerts) >= count,
                description=what,
                mediatypeid=mediatypeid,
                timeout=150,
            )

        # step 1 (A and B) at once, step 2 (A again) a minute later, each retried once
        await asyncio.to_thread(sent, 3, "both escalation steps")
        await asyncio.to_thread(zs.acknowledge, rpc, eventid, "dedup proof")
        await asyncio.to_thread(sent, 5, "the update notifications")
        zs.send(host, key, 0, server_port=zabbix_dev.server_port)
        alerts = await asyncio.to_thread(sent, 7, "the recovery notifications")

    assert len(alerts) == 7, [a["alertid"] for a in alerts]
    assert all(int(a["retries"]) >= 1 for a in alerts), "every alert was retried"
    # This problem's deliveries only: a problem an interrupted earlier run left open on the same
    # trigger also recovers (and notifies through this media type) when the value drops.
    ours = [body for body in receiver.bodies if body["event_id"] == eventid]
    assert len(ours) == sum(1 + int(a["retries"]) for a in alerts)
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for body in ours:
        by_key[key_of(body)].append(body)
    # One key per Zabbix alert: retries collapse, distinct notifications never merge.
    assert len(by_key) == len(alerts)
    for bodies in by_key.values():
        assert all(b == bodies[0] for b in bodies), "a retry resends the same parameters"
    kinds = sorted(
        (b[0]["event_update_status"], b[0]["event_value"], b[0]["sendto"]) for b in by_key.values()
    )
    assert kinds == [
        ("0", "0", "+819022220001"),  # recovery to A
        ("0", "0", "+819022220002"),  # recovery to B
        ("0", "1", "+819022220001"),  # step 1 to A
        ("0", "1", "+819022220001"),  # step 2 to A: same recipient, its own key
        ("0", "1", "+819022220002"),  # step 1 to B
        ("1", "1", "+819022220001"),  # update to A
        ("1", "1", "+819022220002"),  # update to B
    ]
