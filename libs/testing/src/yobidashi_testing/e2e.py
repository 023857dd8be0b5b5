"""The whole product against a real dev Zabbix: Zabbix → ingest → dialer → simulator → acker.

`e2e_stack` provisions Zabbix (host, trapper item, trigger, our media type pointing at a real
``yobidashi-ingest``, on-call users with phone media, the action, the acker's API user), then
starts ingest, dialer and acker as the real console scripts, with the Twilio simulator in
process. Tests fire the trigger over the Zabbix sender protocol and watch what happens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yobidashi_testing import zabbix_scenario as zs
from yobidashi_testing.media_type import MEDIA_TYPE_YAML
from yobidashi_testing.nats_server import NatsServer, find_nats_server, free_port
from yobidashi_testing.processes import ServiceProcess
from yobidashi_testing.stack import Sim, dialer_process, simulator
from yobidashi_testing.zabbix_api import ZabbixRpc
from yobidashi_testing.zabbix_dev import DevInstance

INGEST_TOKEN = "e2e-ingest-token-0123456789"


@dataclass
class E2E:
    zabbix: DevInstance
    rpc: ZabbixRpc  # Admin: to observe, and to play the human in the Zabbix UI
    scenario: zs.Scenario
    nats: NatsServer
    sim: Sim
    ingest: ServiceProcess
    dialer: ServiceProcess
    acker: ServiceProcess
    phones: tuple[str, ...]

    @property
    def host(self) -> str:
        return self.scenario.names.host

    @property
    def key(self) -> str:
        return self.scenario.names.item_key

    def send(self, value: float) -> None:
        zs.send(self.host, self.key, value, server_port=self.zabbix.server_port)

    def fire(self) -> str:
        """A fresh problem: value back to normal, then high. Returns the problem's event id."""
        baseline = zs.last_event_id(self.rpc, self.scenario.triggerid)
        self.send(0)
        self.send(10)
        event: dict[str, Any] = zs.wait_for_problem(
            self.rpc, self.scenario.triggerid, after_eventid=baseline
        )
        return str(event["eventid"])

    def acknowledges(self, eventid: str) -> list[dict[str, Any]]:
        return zs.acknowledges(self.rpc, eventid)

    async def wait_acknowledged(self, eventid: str, limit: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            acks = await asyncio.to_thread(self.acknowledges, eventid)
            if acks:
                return acks
            await asyncio.sleep(0.5)
        raise AssertionError(f"event {eventid} was not acknowledged within {limit:.0f}s")


@asynccontextmanager
async def e2e_stack(
    zabbix: DevInstance,
    workdir: Path,
    *,
    prefix: str,
    phones: Sequence[str],
    dialer_env: dict[str, str] | None = None,
    acker_env: dict[str, str] | None = None,
    sim_settings: dict[str, Any] | None = None,
) -> AsyncIterator[E2E]:
    binary = find_nats_server()
    assert binary is not None, "nats-server is installed by `make venv`"
    rpc = ZabbixRpc(zabbix.api_url)
    rpc.login(zabbix.admin_username, zabbix.admin_password)
    ingest_port, dialer_port = free_port(), free_port()
    scenario = await asyncio.to_thread(
        zs.provision,
        rpc,
        zs.ScenarioNames.for_prefix(prefix),
        media_type_yaml=MEDIA_TYPE_YAML,
        media_parameters={
            "URL": f"http://127.0.0.1:{ingest_port}/v1/zabbix",
            "token": INGEST_TOKEN,
            "incident_page": f"http://127.0.0.1:{dialer_port}/incidents",
        },
        phones=phones,
    )
    frontend = zabbix.api_url.removesuffix("/api_jsonrpc.php")
    async with AsyncExitStack() as stack:
        nats = stack.enter_context(NatsServer(binary))
        sim = await stack.enter_async_context(simulator(**(sim_settings or {})))
        ingest = stack.enter_context(
            ServiceProcess(
                "yobidashi-ingest",
                {"NATS_URL": nats.url, "INGEST_TOKEN": INGEST_TOKEN, "ZABBIX_URL": frontend},
                workdir / "ingest.log",
                port=ingest_port,
            )
        )
        dialer = stack.enter_context(
            dialer_process(nats.url, sim, workdir / "dialer.log", dialer_env, port=dialer_port)
        )
        acker = stack.enter_context(
            ServiceProcess(
                "yobidashi-acker",
                {
                    "NATS_URL": nats.url,
                    "ZABBIX_URL": frontend,
                    "ZABBIX_API_TOKEN": scenario.acker_token.token,
                    "ZABBIX_USER": scenario.names.acker_user,
                    "ZABBIX_TIMEOUT": "3",
                    "NATS_ACK_WAIT": "5",
                    **(acker_env or {}),
                },
                workdir / "acker.log",
            )
        )
        for proc in (ingest, dialer, acker):
            proc.wait_ready()
        # New objects reach the Zabbix server only at its next config sync.
        await asyncio.to_thread(
            zs.wait_for_config_sync,
            scenario.names.host,
            scenario.names.item_key,
            server_port=zabbix.server_port,
            changed_at=scenario.changed_at,
        )
        e2e = E2E(zabbix, rpc, scenario, nats, sim, ingest, dialer, acker, tuple(phones))
        try:
            yield e2e
        finally:
            e2e.send(0)  # leave no problem open for the next test
