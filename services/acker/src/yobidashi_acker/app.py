"""Acker service: HTTP surface and lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from yobidashi_acker.settings import AckerSettings
from yobidashi_common.bus import Bus
from yobidashi_common.service import add_ops_routes
from yobidashi_common.subjects import shared_streams


def create_app(settings: AckerSettings, bus: Bus | None = None) -> FastAPI:
    bus = bus or Bus(settings, "yobidashi-acker", streams=shared_streams(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        yield
        await bus.close()

    app = FastAPI(title="Yobidashi acker", version="1", lifespan=lifespan)
    app.state.bus = bus
    add_ops_routes(app, lambda: {"nats": bus.ready})
    return app
