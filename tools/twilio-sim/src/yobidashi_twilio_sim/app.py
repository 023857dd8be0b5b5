"""`create_app(settings)`: the simulator as one FastAPI app, engine started in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from yobidashi_twilio_sim.admin import build_admin_router
from yobidashi_twilio_sim.engine import CallEngine
from yobidashi_twilio_sim.errors import NOT_FOUND, error_response
from yobidashi_twilio_sim.journal import Journal
from yobidashi_twilio_sim.rest import FaultInjector, build_rest_router
from yobidashi_twilio_sim.scenarios import ScenarioBook
from yobidashi_twilio_sim.settings import SimSettings
from yobidashi_twilio_sim.util import API_VERSION


@dataclass
class Simulator:
    """Everything one simulator instance holds; reachable as `app.state.sim`."""

    settings: SimSettings
    journal: Journal
    scenarios: ScenarioBook
    engine: CallEngine
    faults: FaultInjector


def create_app(settings: SimSettings | None = None) -> FastAPI:
    settings = settings or SimSettings()
    journal = Journal()
    scenarios = ScenarioBook(settings.scenarios, settings.default_scenario)
    engine = CallEngine(settings, journal, scenarios)
    sim = Simulator(settings, journal, scenarios, engine, FaultInjector())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="Yobidashi Twilio simulator",
        description="Twilio Programmable Voice (REST 2010-04-01 + webhooks) for local use.",
        lifespan=lifespan,
    )
    app.state.sim = sim
    app.include_router(build_rest_router(settings, engine, journal, sim.faults))
    app.include_router(build_admin_router(engine, journal, scenarios, sim.faults))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths under the Twilio API answer in Twilio's error format.
        if request.url.path.startswith(f"/{API_VERSION}/"):
            code = NOT_FOUND if exc.status_code == 404 else exc.status_code
            return error_response(exc.status_code, code, str(exc.detail))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    return app
