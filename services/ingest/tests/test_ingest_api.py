"""Ingest's HTTP contract, in-process, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import nats
import pytest

from yobidashi_common.subjects import ALERTS_STREAM
from yobidashi_harness import payloads
from yobidashi_harness.nats_server import NatsServer
from yobidashi_ingest.app import create_app
from yobidashi_ingest.settings import IngestSettings
from yobidashi_testing.stack import stored_alerts

pytestmark = pytest.mark.integration

TOKEN = "test-ingest-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Client = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


def settings(url: str, **overrides: object) -> IngestSettings:
    return IngestSettings.model_validate(
        {"nats_url": url, "ingest_token": TOKEN, "nats_publish_timeout": 1.0, **overrides}
    )


@asynccontextmanager
async def running(s: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(s)
    async with app.router.lifespan_context(app):
        await app.state.bus.wait_ready()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


async def test_without_or_with_a_wrong_token_is_401(nats_url: str) -> None:
    async with running(settings(nats_url)) as client:
        body = payloads.problem()
        missing = await client.post("/v1/zabbix", json=body)
        wrong = await client.post("/v1/zabbix", json=body, headers={"Authorization": "Bearer nope"})
        basic = await client.post(
            "/v1/zabbix", json=body, headers={"Authorization": f"Basic {TOKEN}"}
        )
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert await stored_alerts(nats_url) == []


async def test_malformed_json_is_422_with_a_readable_reason(nats_url: str) -> None:
    async with running(settings(nats_url)) as client:
        response = await client.post("/v1/zabbix", content=b'{"event_id": "1",', headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_json"
    assert "not valid JSON" in response.json()["message"]


async def test_invalid_fields_are_422_naming_each_field(nats_url: str) -> None:
    body = payloads.problem(event_id="{EVENT.ID}", event_nseverity="7")
    async with running(settings(nats_url)) as client:
        response = await client.post("/v1/zabbix", json=body, headers=AUTH)
        not_object = await client.post("/v1/zabbix", json=[1, 2], headers=AUTH)
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["details"]}
    assert fields == {"event_id", "event_nseverity"}
    assert not_object.status_code == 422
    assert not_object.json()["message"] == "body must be a JSON object"
    assert await stored_alerts(nats_url) == []


async def test_missing_severity_is_422_not_500(nats_url: str) -> None:
    body = payloads.problem(event_nseverity=None, event_severity=None)
    async with running(settings(nats_url)) as client:
        response = await client.post("/v1/zabbix", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "event_nseverity"


async def test_oversized_body_is_413(nats_url: str) -> None:
    body = payloads.problem(message="x" * 5000)
    async with running(settings(nats_url, ingest_max_body_bytes=4096)) as client:
        declared = await client.post("/v1/zabbix", json=body, headers=AUTH)

        async def chunks() -> AsyncIterator[bytes]:
            data = json.dumps(body).encode()
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        streamed = await client.post("/v1/zabbix", content=chunks(), headers=AUTH)
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert declared.json()["error"] == "too_large"


async def test_valid_body_is_202_and_five_sends_store_exactly_one(nats_url: str) -> None:
    body = payloads.problem(event_id=101)
    async with running(settings(nats_url)) as client:
        answers = [await client.post("/v1/zabbix", json=body, headers=AUTH) for _ in range(5)]
    assert [a.status_code for a in answers] == [202] * 5
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True, True]
    assert len({a.json()["id"] for a in answers}) == 1
    stored = await stored_alerts(nats_url)
    assert len(stored) == 1
    assert stored[0].source_event_id == "101"
    assert stored[0].dedup_key == answers[0].json()["id"]


async def test_distinct_notifications_are_all_stored(nats_url: str) -> None:
    bodies = [
        payloads.problem(event_id=7),
        payloads.problem(event_id=7, sendto="+15555550100"),
        payloads.problem(event_id=7, step_history="step 1\nstep 2 sent"),
        payloads.update(event_id=7),
        payloads.recovery(event_id=7),
    ]
    async with running(settings(nats_url)) as client:
        answers = [await client.post("/v1/zabbix", json=b, headers=AUTH) for b in bodies]
    assert all(a.status_code == 202 and not a.json()["duplicate"] for a in answers)
    stored = await stored_alerts(nats_url)
    assert [e.status.value for e in stored] == [
        "problem",
        "problem",
        "problem",
        "updated",
        "resolved",
    ]


async def test_subject_carries_status_and_severity(nats_url: str) -> None:
    async with running(settings(nats_url)) as client:
        await client.post("/v1/zabbix", json=payloads.problem(severity=5), headers=AUTH)
    nc = await nats.connect(nats_url)
    try:
        msg = await nc.jetstream().get_msg(ALERTS_STREAM, 1)
    finally:
        await nc.close()
    assert msg.subject == "yobidashi.alerts.v1.problem.disaster"
    assert msg.headers is not None
    assert msg.headers["traceparent"].startswith("00-")


async def test_503_while_nats_is_down_then_202_once_it_is_back(nats_server: NatsServer) -> None:
    body = payloads.problem(event_id=555)
    async with running(settings(nats_server.url)) as client:
        nats_server.stop()
        down = await client.post("/v1/zabbix", json=body, headers=AUTH)
        ready_down = await client.get("/readyz")
        nats_server.start()
        await _eventually_ready(client)
        back = await client.post("/v1/zabbix", json=body, headers=AUTH)
    assert down.status_code == 503
    assert down.headers["retry-after"] == "10"
    assert down.json()["error"] == "unavailable"
    assert ready_down.status_code == 503
    assert back.status_code == 202
    assert back.json()["duplicate"] is False
    assert len(await stored_alerts(nats_server.url)) == 1


async def _eventually_ready(client: httpx.AsyncClient) -> None:
    for _ in range(200):
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("ingest never became ready again after NATS came back")


async def test_ops_routes_and_openapi(nats_url: str) -> None:
    async with running(settings(nats_url)) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert health.json() == {"status": "ok"}
    assert ready.json() == {"status": "ready", "checks": {"nats": True}}
    assert "yobidashi_ingest_requests_total" in metrics.text
    assert docs.status_code == 200
    body_ref = spec["paths"]["/v1/zabbix"]["post"]["requestBody"]["content"]["application/json"]
    assert body_ref["schema"]["$ref"] == "#/components/schemas/ZabbixWebhook"
    webhook = spec["components"]["schemas"]["ZabbixWebhook"]
    assert webhook["examples"][0]["event_id"] == "17"
    assert "Tag" in spec["components"]["schemas"]
