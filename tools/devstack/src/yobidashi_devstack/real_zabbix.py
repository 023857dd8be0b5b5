"""``make run-zabbix``: a local real Zabbix (7.0 or 6.0), wired to page through this devstack.

It imports our media type pointing at the devstack's ingest, creates a host with a trapper item
and a trigger, on-call users with the sample contacts' numbers, the action, and the acker's API
user. "Send test alert" then raises a real problem on that trigger: Zabbix runs the action and
calls ingest itself, and the acker's acknowledgement shows in the Zabbix UI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from yobidashi_harness import zabbix_dev
from yobidashi_harness import zabbix_scenario as zs
from yobidashi_harness.media_type import MEDIA_TYPE_YAML
from yobidashi_harness.zabbix_api import ZabbixRpc

PREFIX = "devstack"


@dataclass
class RealZabbix:
    instance: zabbix_dev.DevInstance
    rpc: ZabbixRpc
    scenario: zs.Scenario
    started_here: bool

    @property
    def frontend(self) -> str:
        return self.instance.api_url.removesuffix("/api_jsonrpc.php")

    @property
    def acker_token(self) -> str:
        return self.scenario.acker_token.token

    @classmethod
    def up(
        cls, webhook_url: str, ingest_token: str, phones: Sequence[str], *, version: str
    ) -> RealZabbix:
        config = zabbix_dev.DevConfig.from_env(version=version)
        was_up, _ = zabbix_dev.status(config)
        instance = zabbix_dev.up(config)
        rpc = ZabbixRpc(instance.api_url, api_version=instance.zabbix_version)
        rpc.login(instance.admin_username, instance.admin_password)
        scenario = zs.provision(
            rpc,
            zs.ScenarioNames.for_prefix(PREFIX),
            media_type_yaml=MEDIA_TYPE_YAML,
            media_parameters={"URL": webhook_url, "token": ingest_token},
            phones=phones,
        )
        zs.wait_for_config_sync(
            scenario.names.host,
            scenario.names.item_key,
            server_port=instance.server_port,
            changed_at=scenario.changed_at,
        )
        return cls(instance, rpc, scenario, started_here=not was_up)

    def _fire(self) -> str:
        names = self.scenario.names
        baseline = zs.last_event_id(self.rpc, self.scenario.triggerid)
        # Back to normal first: that resolves the previous test problem, then a new one.
        zs.send(names.host, names.item_key, 0, server_port=self.instance.server_port)
        zs.send(names.host, names.item_key, 10, server_port=self.instance.server_port)
        event = zs.wait_for_problem(
            self.rpc, self.scenario.triggerid, after_eventid=baseline, timeout=30
        )
        return f"Zabbix raised problem {event['eventid']} on {names.host}"

    async def fire(self) -> str:
        return await asyncio.to_thread(self._fire)

    def down(self) -> None:
        names = self.scenario.names  # leave no test problem open
        zs.send(names.host, names.item_key, 0, server_port=self.instance.server_port)
        if self.started_here:
            zabbix_dev.down(self.instance.config)
