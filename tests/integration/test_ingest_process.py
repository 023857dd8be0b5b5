"""The ``yobidashi-ingest`` console script as production runs it: a process, env config, SIGTERM."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from yobidashi_common.subjects import ALERTS_STREAM
from yobidashi_harness import payloads
from yobidashi_harness.nats_server import NatsServer
from yobidashi_harness.processes import ServiceProcess

pytestmark = pytest.mark.integration

TOKEN = "process-test-token-abcdefgh"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def ingest(nats_server: NatsServer, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {"NATS_URL": nats_server.url, "INGEST_TOKEN": TOKEN, "NATS_PUBLISH_TIMEOUT": "1"}
    proc = ServiceProcess("yobidashi-ingest", env, tmp_path / "ingest.log").start()
    proc.wait_ready()
    yield proc
    proc.stop()


async def stored_count(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info(ALERTS_STREAM)).state.messages)
    finally:
        await nc.close()


async def test_done_criteria_against_a_running_ingest(
    ingest: ServiceProcess, nats_server: NatsServer
) -> None:
    url = f"{ingest.url}/v1/zabbix"
    body = payloads.problem(event_id=9001)
    with httpx.Client(timeout=10) as http:
        assert http.post(url, json=body).status_code == 401
        bad = http.post(url, content=b"{not json", headers=AUTH)
        assert bad.status_code == 422
        assert "not valid JSON" in bad.json()["message"]
        answers = [http.post(url, json=body, headers=AUTH) for _ in range(5)]
        assert [a.status_code for a in answers] == [202] * 5
        assert await stored_count(nats_server.url) == 1

        other = payloads.problem(event_id=9002)
        nats_server.stop()
        down = http.post(url, json=other, headers=AUTH)
        assert down.status_code == 503
        assert "retry-after" in down.headers
        nats_server.start()
        ingest.wait_ready(timeout=30)
        back = http.post(url, json=other, headers=AUTH)
        assert back.status_code == 202
    assert await stored_count(nats_server.url) == 2


def test_sigterm_exits_cleanly_and_logs_are_json_without_secrets(
    ingest: ServiceProcess,
) -> None:
    with httpx.Client(timeout=10) as http:
        http.post(f"{ingest.url}/v1/zabbix", json=payloads.problem(), headers=AUTH)
        http.post(
            f"{ingest.url}/v1/zabbix",
            json=payloads.problem(),
            headers={"Authorization": "Bearer wrong-token-guess"},
        )
    assert ingest.stop() == 0
    time.sleep(0.1)
    lines = [json.loads(line) for line in ingest.log_file.read_text().splitlines() if line]
    events = {line["event"] for line in lines}
    assert {"bus.connected", "ingest.accepted", "ingest.rejected"} <= events
    accepted = next(line for line in lines if line["event"] == "ingest.accepted")
    assert accepted["service"] == "ingest"
    assert accepted["event_id"] == "17"
    assert len(accepted["trace_id"]) == 32
    assert accepted["sendto"] == "09*-****-5678"
    text = ingest.log_file.read_text()
    assert TOKEN not in text
    assert "090-1234-5678" not in text
    assert "9012345678" not in text


def test_missing_token_setting_is_a_readable_startup_error(tmp_path: Path) -> None:
    proc = ServiceProcess("yobidashi-ingest", {"INGEST_TOKEN": ""}, tmp_path / "bad.log")
    with pytest.raises(RuntimeError, match="exited with 2"):
        proc.start(timeout=20)
    assert "INGEST_TOKEN" in proc.log_file.read_text()
