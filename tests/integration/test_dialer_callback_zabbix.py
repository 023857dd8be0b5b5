"""Calling back with a PIN, against the real Zabbix 7.0: only the right caller with the right PIN
acknowledges, and the acknowledgement lands in Zabbix.

A real problem (trapper value over the threshold), a real ``yobidashi-acker`` process with its
own API token, the dialer in this process with ``DIAL_CALLBACK=pin``, the simulator as both
Tanaka's phone and a stranger's. What Zabbix recorded is read back as Admin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from yobidashi_common.events import KeyPressed, Severity
from yobidashi_common.subjects import KEYS_STREAM
from yobidashi_dialer.core.model import IncidentStatus
from yobidashi_dialer.voice.callback_phrases import CALLBACK_PHRASES
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.nats_server import NatsServer
from yobidashi_harness.processes import ServiceProcess
from yobidashi_harness.zabbix_api import ZabbixRpc
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_testing.people import TANAKA
from yobidashi_testing.stack import Bus, alert_event, dialer_in_process, eventually, simulator

from .test_dialer_callback import CONFIG, NEUTRAL, STRANGER, call_back, said

pytestmark = [pytest.mark.zabbix, pytest.mark.integration]

PREFIX = "callback-it"
PERM_READ_WRITE = 3


@dataclass(frozen=True)
class Setup:
    rpc: ZabbixRpc
    api_url: str
    server_port: int
    host: str
    key: str
    trigger: str
    token: str


@pytest.fixture(scope="module")
def setup(zabbix_dev: DevInstance) -> Iterator[Setup]:
    rpc = ZabbixRpc(zabbix_dev.api_url)
    rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
    where = zs.ensure_trapper_host(rpc, PREFIX, "yobidashi.callback.value")
    trigger = zs.ensure_trigger(rpc, where.hostid, f"{PREFIX} disk full", where.above(5))
    group = zs.ensure_user_group(
        rpc, "Yobidashi ackers", [where.groupid], permission=PERM_READ_WRITE
    )
    userid = zs.ensure_user(
        rpc,
        zs.UserSpec(
            username=zs.ACKER_USERNAME, usrgrpids=[group], name="Yobidashi", surname="Acker"
        ),
    )
    token = zs.ensure_api_token(rpc, userid, PREFIX)
    zs.wait_for_config_sync(
        where.host, where.key, server_port=zabbix_dev.server_port, changed_at=time.time()
    )
    yield Setup(
        rpc, zabbix_dev.api_url, zabbix_dev.server_port, where.host, where.key, trigger,
        token.token,
    )  # fmt: skip
    zs.send(where.host, where.key, 0, server_port=zabbix_dev.server_port)


@pytest.fixture
def acker(setup: Setup, nats_server: NatsServer, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {
        "NATS_URL": nats_server.url,
        "ZABBIX_URL": setup.api_url.removesuffix("/api_jsonrpc.php"),
        "ZABBIX_API_TOKEN": setup.token,
        "ZABBIX_TIMEOUT": "5s",
        "ACKER_RETRY_BACKOFF": "0.2s,0.5s,1s",
    }
    with ServiceProcess("yobidashi-acker", env, tmp_path / "acker.log") as proc:
        proc.wait_ready()
        yield proc


def fire(setup: Setup) -> str:
    baseline = zs.last_event_id(setup.rpc, setup.trigger)
    zs.send(setup.host, setup.key, 0, server_port=setup.server_port)
    zs.send(setup.host, setup.key, 10, server_port=setup.server_port)
    eventid: str = zs.wait_for_problem(setup.rpc, setup.trigger, after_eventid=baseline)["eventid"]
    return eventid


@pytest.mark.parametrize("zabbix_dev", ["7.0"], indirect=True)
async def test_a_stranger_learns_nothing_a_wrong_pin_acks_nothing_the_right_pin_acks_in_zabbix(
    setup: Setup, acker: ServiceProcess, nats_server: NatsServer, tmp_path: Path
) -> None:
    eventid = fire(setup)
    path = tmp_path / "oncall.yaml"
    path.write_text(CONFIG)
    async with (
        simulator() as sim,
        dialer_in_process(
            nats_server.url, sim, YOBIDASHI_CONFIG=str(path), DIAL_CALLBACK="pin"
        ) as d,
        Bus(nats_server.url) as bus,
    ):
        await sim.scenario(TANAKA, {"answer": "no-answer"})
        await bus.publish_alert(
            alert_event(eventid, sendto=None, title="ディスク満杯", severity=Severity.HIGH)
        )
        [missed] = await sim.wait_calls(TANAKA, 1, "tanaka's missed call")
        await sim.wait_status(missed["sid"], "no-answer")

        stranger = await call_back(sim, d.url, STRANGER, "4321#", "1")
        assert said(stranger) == NEUTRAL
        wrong = await call_back(sim, d.url, TANAKA, "9999#", "1")
        spoken = said(wrong)
        assert spoken == f"{CALLBACK_PHRASES['ja'].pin_prompt} {NEUTRAL}", wrong["spoken"]
        assert "ディスク満杯" not in spoken
        assert "田中" not in spoken

        right = await call_back(sim, d.url, TANAKA, "4321#", "1")
        assert "ディスク満杯" in said(right)

        async def acknowledged_in_zabbix() -> bool:
            return await asyncio.to_thread(
                lambda: zs.get_event(setup.rpc, eventid)["acknowledged"] == "1"
            )

        await eventually(acknowledged_in_zabbix, "the call-back's ack to land in Zabbix", 90)
        [entry] = zs.acknowledges(setup.rpc, eventid)
        assert entry["username"] == zs.ACKER_USERNAME
        assert "田中" in entry["message"]
        assert right["sid"] in entry["message"]
        incident = await d.dialer.engine.load(f"zabbix:{eventid}")
        assert incident is not None
        assert incident.status is IncidentStatus.ACKNOWLEDGED
        # Only the right PIN's call pressed anything that counts.
        keys = await bus.messages(KEYS_STREAM, "yobidashi.keys.v1.", KeyPressed)
        assert [k.call_sid for k in keys] == [right["sid"]]
