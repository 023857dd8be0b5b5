"""The dialer with its real neighbours, for integration tests: nats-server + Twilio simulator.

Nothing here is mocked. The simulator runs in-process (uvicorn on a free port), the dialer runs
in-process or as its real console script, and the bus is a real nats-server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from yobidashi_common.bus import BUS_HANDLED
from yobidashi_common.events import AlertEvent, AlertStatus, Severity
from yobidashi_common.subjects import ALERTS_STREAM, alert_subject
from yobidashi_dialer.app import Dialer, create_app
from yobidashi_dialer.settings import DialerSettings
from yobidashi_testing.nats_server import free_port
from yobidashi_testing.processes import ServiceProcess
from yobidashi_twilio_sim.settings import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, SimSettings
from yobidashi_twilio_sim.testing import running_sim, serve_app

M = TypeVar("M", bound=BaseModel)

WAIT_LIMIT = 60.0  # a hang guard, never a speed assertion
FROM_NUMBER = "+14155550100"


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, limit: float = WAIT_LIMIT
) -> Any:
    """Poll until ``check`` returns something truthy; fail with ``what`` after ``limit`` s."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def alert_event(
    event_id: int | str,
    *,
    status: AlertStatus = AlertStatus.PROBLEM,
    sendto: str | None = "090-1234-5678",
    severity: Severity = Severity.HIGH,
    title: str = "HTTP サービスが応答しません",
    host: str = "web01",
    started_ago: float = 120,
    seq: int = 1,
    **fields: Any,
) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(
        source_event_id=str(event_id),
        problem_key=f"zabbix:{event_id}",
        dedup_key=f"zabbix.{event_id}.{status.value}.{seq}",
        status=status,
        severity=severity,
        title=title,
        host=host,
        received_at=now,
        started_at=now - timedelta(seconds=started_ago),
        sendto=sendto,
        **fields,
    )


class Bus:
    """A plain NATS client for tests: publish what a service would, read what services stored."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._nc: NatsClient | None = None

    async def __aenter__(self) -> Bus:
        self._nc = await nats.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._nc is not None:
            await self._nc.close()

    @property
    def js(self) -> Any:
        assert self._nc is not None
        return self._nc.jetstream()

    async def publish_alert(self, event: AlertEvent) -> None:
        await self.js.publish(
            alert_subject(event.status, event.severity),
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": event.dedup_key},
        )

    async def messages(self, stream: str, subject_prefix: str, model: type[M]) -> list[M]:
        """Everything stored on ``stream`` under ``subject_prefix``, decoded, in order."""
        try:
            info = await self.js.stream_info(stream)
        except NotFoundError:
            return []
        found: list[M] = []
        if info.state.messages == 0:
            return found
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await self.js.get_msg(stream, seq)
            except NotFoundError:
                continue
            if msg.subject.startswith(subject_prefix):
                found.append(model.model_validate_json(msg.data))
        return found


async def stored_alerts(url: str) -> list[AlertEvent]:
    """Every ``AlertEvent`` stored on the alerts stream, in order."""
    async with Bus(url) as bus:
        return await bus.messages(ALERTS_STREAM, "yobidashi.alerts.v1.", AlertEvent)


@dataclass(frozen=True)
class SimAccount:
    """Where the simulator is and which test account it expects."""

    base_url: str
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN


@dataclass
class Sim:
    base_url: str
    account_sid: str
    auth_token: str
    http: httpx.AsyncClient

    async def scenario(
        self, number: str, spec: Mapping[str, Any] | list[Mapping[str, Any]]
    ) -> None:
        (await self.http.put(f"/sim/scenarios/{number}", json=spec)).raise_for_status()

    async def settings(self, **changes: Any) -> None:
        (await self.http.put("/sim/settings", json=changes)).raise_for_status()

    async def faults(self, **faults: Any) -> None:
        (await self.http.put("/sim/faults", json=faults)).raise_for_status()

    async def calls(self, to: str | None = None) -> list[dict[str, Any]]:
        params = {"to": to} if to else {}
        response = await self.http.get("/sim/calls", params=params)
        response.raise_for_status()
        calls: list[dict[str, Any]] = response.json()["calls"]
        return calls

    async def call(self, sid: str) -> dict[str, Any]:
        response = await self.http.get(f"/sim/calls/{sid}")
        response.raise_for_status()
        journal: dict[str, Any] = response.json()
        return journal

    async def creates(self) -> list[dict[str, Any]]:
        response = await self.http.get("/sim/creates")
        response.raise_for_status()
        creates: list[dict[str, Any]] = response.json()["creates"]
        return creates

    async def health(self) -> dict[str, Any]:
        health: dict[str, Any] = (await self.http.get("/healthz")).json()
        return health

    async def clear(self) -> None:
        """Forget every call and create in the journal."""
        (await self.http.delete("/sim/journal")).raise_for_status()

    async def press(self, number: str, digits: str) -> None:
        response = await self.http.post(f"/sim/phones/{number}/digits", json={"digits": digits})
        response.raise_for_status()

    async def wait_calls(self, to: str, count: int, what: str = "") -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            calls = await self.calls(to)
            return calls if len(calls) >= count else None

        found: list[dict[str, Any]] = await eventually(enough, what or f"{count} call(s) to {to}")
        return found

    async def wait_status(self, sid: str, *statuses: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            journal = await self.call(sid)
            return journal if journal["status"] in statuses else None

        found: dict[str, Any] = await eventually(reached, f"call {sid} to be {statuses}")
        return found


SIM_DEFAULTS: dict[str, Any] = {"time_scale": 0.05, "cps": 10}


@asynccontextmanager
async def simulator(**settings: Any) -> AsyncIterator[Sim]:
    """A Twilio simulator in this process; time scale 0.05 (a 30 s ring lasts 1.5 s)."""
    sim_settings = SimSettings(**{**SIM_DEFAULTS, **settings})
    async with (
        running_sim(sim_settings) as running,
        httpx.AsyncClient(base_url=running.base_url, timeout=10) as http,
    ):
        yield Sim(running.base_url, sim_settings.account_sid, sim_settings.auth_token, http)


@asynccontextmanager
async def simulator_process(log_file: Path, **settings: Any) -> AsyncIterator[Sim]:
    """The real ``yobidashi-twilio-sim`` in its own process: for timing measurements, where
    sharing an event loop with the code under test would distort what it records."""
    sim_settings = SimSettings(**{**SIM_DEFAULTS, **settings})
    port = free_port()
    env = {f"TWILIO_SIM_{k.upper()}": str(v) for k, v in {**SIM_DEFAULTS, **settings}.items()}
    env.update(TWILIO_SIM_PORT=str(port), TWILIO_SIM_LOG_LEVEL="warning")
    with ServiceProcess("yobidashi-twilio-sim", env, log_file, port=port) as proc:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
            yield Sim(proc.url, sim_settings.account_sid, sim_settings.auth_token, http)


def dialer_env(nats_url: str, sim: Sim | SimAccount, port: int, **overrides: str) -> dict[str, str]:
    """The dialer's environment variables for this stack (strings, as a process gets them)."""
    env = {
        "NATS_URL": nats_url,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": sim.account_sid,
        "TWILIO_AUTH_TOKEN": sim.auth_token,
        "TWILIO_API_BASE_URL": sim.base_url,
        "TWILIO_FROM_NUMBERS": FROM_NUMBER,
        "TWILIO_CPS": "10",
        "TWILIO_MAX_CONCURRENT_CALLS": "0",
        "TWILIO_RING_TIMEOUT": "30",
        "DIAL_RETRY_PAUSE": "0.3",
        "DIAL_RECOVERY_AFTER": "3",
        "DIAL_WATCHDOG_GRACE": "60",
        "DIAL_GATHER_TIMEOUT": "6",
        "SHUTDOWN_GRACE": "3",
    }
    env.update(overrides)
    return env


def settings_from(env: Mapping[str, str]) -> DialerSettings:
    return DialerSettings.model_validate({k.lower(): v for k, v in env.items()})


@dataclass
class RunningDialer:
    url: str
    dialer: Dialer
    settings: DialerSettings


def handler_errors() -> float:
    """How often any dialer consumer's handler raised, so far in this process."""
    total = 0.0
    for metric in BUS_HANDLED.collect():
        for sample in metric.samples:
            if (
                sample.name.endswith("_total")
                and sample.labels.get("result") == "error"
                and sample.labels.get("consumer", "").startswith("dialer-")
            ):
                total += sample.value
    return total


@asynccontextmanager
async def dialer_in_process(
    nats_url: str,
    sim: Sim,
    env: Mapping[str, str] | None = None,
    *,
    allow_handler_errors: bool = False,
    **overrides: str,
) -> AsyncIterator[RunningDialer]:
    """The dialer on a free port. Fails the test if a handler raised (a hidden bug that a
    redelivery papered over) unless the test expects it."""
    port = free_port()
    settings = settings_from(dialer_env(nats_url, sim, port, **{**(env or {}), **overrides}))
    dialer = Dialer(settings)
    app = create_app(settings, dialer)
    errors_before = handler_errors()
    async with serve_app(app, port=port) as url:
        await asyncio.wait_for(dialer.bus.wait_ready(), 30)
        yield RunningDialer(url, dialer, settings)
    if not allow_handler_errors:
        assert handler_errors() == errors_before, "a dialer handler raised; see the log above"


def dialer_process(
    nats_url: str,
    sim: Sim | SimAccount,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    **overrides: str,
) -> ServiceProcess:
    """The real ``yobidashi-dialer`` console script (for kill -9 tests)."""
    port = port or free_port()
    full = dialer_env(nats_url, sim, port, **{**(env or {}), **overrides})
    full.setdefault("LOG_LEVEL", os.environ.get("YOBIDASHI_TEST_LOG_LEVEL", "INFO"))
    return ServiceProcess("yobidashi-dialer", full, log_file, port=port)
