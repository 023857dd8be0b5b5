"""Fixtures: the simulator and a customer webhook server, both real uvicorn servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from yobidashi_twilio_sim.settings import SimSettings
from yobidashi_twilio_sim.testing import Receiver, RunningSim, running_sim, serve_app

# 1 simulated second = 10 ms: a 60 s ring timeout takes 0.6 s.
TIME_SCALE = 0.01


@pytest.fixture
def sim_settings() -> SimSettings:
    return SimSettings(time_scale=TIME_SCALE, cps=100)


@pytest.fixture
async def sim(sim_settings: SimSettings) -> AsyncIterator[RunningSim]:
    async with running_sim(sim_settings) as running:
        yield running


@pytest.fixture
async def http(sim: RunningSim) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        yield client


@pytest.fixture
async def receiver(sim: RunningSim) -> AsyncIterator[Receiver]:
    hooks = Receiver(sim.settings.auth_token)
    async with serve_app(hooks.app) as base_url:
        hooks.base_url = base_url
        yield hooks


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    # An edge or region would be spliced into the host name and break the base_url override.
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def twilio_client(sim: RunningSim) -> Iterator[Any]:
    """The official sync client, pointed at the simulator. Call it via asyncio.to_thread."""
    client = Client(sim.settings.account_sid, sim.settings.auth_token)
    client.api.base_url = sim.base_url
    yield client
    client.http_client.session.close()


@pytest.fixture
async def async_twilio(sim: RunningSim) -> AsyncIterator[Any]:
    """The official client with its aiohttp transport, for `create_async` and friends."""
    http_client = AsyncTwilioHttpClient()
    client = Client(sim.settings.account_sid, sim.settings.auth_token, http_client=http_client)
    client.api.base_url = sim.base_url
    yield client
    await http_client.close()
