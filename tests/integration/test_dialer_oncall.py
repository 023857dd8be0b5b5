"""The on-call config in a running dialer: /v1/oncall, /v1/incidents, reloads, the CLI."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from yobidashi_dialer import metrics
from yobidashi_harness.nats_server import NatsServer
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing import oncall_yaml
from yobidashi_testing.commands import ingest_process, run_cli
from yobidashi_testing.dialer_stack import dialer_stack, write_oncall
from yobidashi_testing.people import TANAKA
from yobidashi_testing.stack import alert_event, dialer_process, eventually, simulator

pytestmark = pytest.mark.integration


def config(on_call: str) -> str:
    return (
        oncall_yaml.contacts(oncall_yaml.TANAKA_CONTACT, oncall_yaml.SATO_CONTACT)
        + oncall_yaml.one_schedule(
            "primary", oncall_yaml.weekly_layer(on_call), name="Primary", timezone="Asia/Tokyo"
        )
        + oncall_yaml.one_policy_for_every_alert(oncall_yaml.step("schedule: primary"))
    )


async def oncall_name(url: str) -> str | None:
    async with httpx.AsyncClient() as http:
        view = (await http.get(f"{url}/v1/oncall")).json()
    person = view["schedules"][0]["on_call"]
    return person["name"] if person else None


async def test_oncall_and_incident_views_and_a_reload_on_change(
    nats_url: str, tmp_path: Path
) -> None:
    path = write_oncall(tmp_path, config("tanaka"))
    async with dialer_stack(nats_url, path, CONFIG_RELOAD_INTERVAL="0.2") as (sim, d, bus):
        assert await oncall_name(d.url) == "田中"
        await sim.scenario(TANAKA, {"answer": "no-answer"})
        await bus.publish_alert(alert_event(4001, sendto=None, title="ディスク満杯"))
        await sim.wait_calls(TANAKA, 1)
        async with httpx.AsyncClient() as http:
            incident = (await http.get(f"{d.url}/v1/incidents/4001")).json()
            missing = await http.get(f"{d.url}/v1/incidents/999999")
            listed = (await http.get(f"{d.url}/v1/incidents", params={"limit": 5})).json()
        assert incident["escalation"]["policy"] == "p"
        assert incident["calls"][0]["contact"] == "田中"
        assert incident["calls"][0]["phone"] == "+81 90-****-0001"
        assert [e["what"] for e in incident["timeline"]][:3] == [
            "escalation started",
            "step 1",
            "calling",
        ]
        assert missing.status_code == 404
        assert listed["incidents"][0]["problem"]["problem_key"] == "zabbix:4001"
        assert listed["incidents"][0]["title"] == "ディスク満杯"

        path.write_text(config("sato"))
        await eventually(lambda: _is(d.url, "佐藤"), "the reload after the change")
        failures = invalid_reloads()
        path.write_text("contacts: [oops")  # broken: the running config stays
        await eventually(
            lambda: _true(invalid_reloads() > failures), "the broken file to be noticed"
        )
        assert await oncall_name(d.url) == "佐藤"


async def _is(url: str, name: str) -> bool:
    return await oncall_name(url) == name


def invalid_reloads() -> float:
    # the dialer under test runs in this process: its counter is ours to read
    return float(metrics.CONFIG_RELOADS.labels("invalid")._value.get())


async def _true(value: bool) -> bool:
    return value


async def test_sighup_reloads_a_running_dialer_process(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    path = write_oncall(tmp_path, config("tanaka"))
    async with simulator() as sim:
        proc = dialer_process(
            nats_server.url, sim, tmp_path / "dialer.log",
            {"YOBIDASHI_CONFIG": str(path), "CONFIG_RELOAD_INTERVAL": "0"},
        ).start()  # fmt: skip
        try:
            assert await oncall_name(proc.url) == "田中"
            path.write_text(config("sato"))
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGHUP)
            await eventually(lambda: _is(proc.url, "佐藤"), "the reload on SIGHUP")
        finally:
            proc.stop()


def test_a_broken_config_stops_the_dialer_at_start_with_the_reasons(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text("contacts:\n  - {id: a, name: A, phones: ['12']}\n")
    env = {
        "YOBIDASHI_CONFIG": str(path),
        "PUBLIC_BASE_URL": "http://127.0.0.1:1",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "not-used-here",
        "TWILIO_FROM_NUMBERS": "+14155550100",
    }
    proc = ServiceProcess("yobidashi-dialer", env, tmp_path / "dialer.log")
    with pytest.raises(RuntimeError, match="exited with 2"):
        proc.start(timeout=20)
    assert "line 2: contacts.0.phones: invalid phone number" in proc.log_file.read_text()


async def test_send_test_alert_rings_the_phone_through_ingest(
    nats_url: str, tmp_path: Path
) -> None:
    token = "cli-test-token-0123456789"
    async with dialer_stack(nats_url) as (sim, _d, _bus):
        with ingest_process(nats_url, tmp_path, INGEST_TOKEN=token) as ingest:
            code, output = await run_cli(
                "send-test-alert", "--ingest", ingest.url, "--token", token,
                "--sendto", "090-5555-0001",
            )  # fmt: skip
            assert code == 0, output
            assert "ingest answered 202" in output
            [call] = await sim.wait_calls("+819055550001", 1, "the test alert's call")
            journal = await sim.wait_status(call["sid"], "completed", "no-answer")
            assert "web01" in journal["spoken"][0]["text"]


async def test_heartbeat_rings_the_canary_number_not_the_on_call_person(
    nats_url: str, tmp_path: Path
) -> None:
    config_path = write_oncall(tmp_path, config("tanaka"))
    token = "heartbeat-test-token-0123456789"
    async with dialer_stack(nats_url, config_path) as (sim, d, _bus):
        with ingest_process(nats_url, tmp_path, INGEST_TOKEN=token) as ingest:
            code, output = await run_cli(
                "heartbeat", "--ingest", ingest.url, "--dialer", d.url,
                "--token", token, "--number", "+819012340099", "--rounds", "1",
                "--timeout", "60s", "--port", "0",
            )  # fmt: skip
        assert code == 0, output
        events = [json.loads(line)["event"] for line in output.splitlines() if line]
        assert "heartbeat.ok" in events, output
        [ok] = [json.loads(line) for line in output.splitlines() if '"heartbeat.ok"' in line]
        assert ok["account"] == "primary"  # which telephony account carried the round
        [call] = await sim.calls("+819012340099")
        assert await sim.calls(TANAKA) == []  # the on-call person slept through it
        journal = await sim.wait_status(call["sid"], "completed")
        assert "Yobidashi heartbeat" in journal["spoken"][0]["text"]
