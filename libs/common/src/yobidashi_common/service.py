"""What every Yobidashi HTTP service has: /healthz, /readyz, /metrics, JSON logs, uvicorn."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from yobidashi_common.settings import ServiceSettings
from yobidashi_common.telemetry import configure_logging

ReadinessCheck = Callable[[], Mapping[str, bool]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def start_stop_lifespan(
    start: Callable[[], Awaitable[object]], stop: Callable[[], Awaitable[object]]
) -> Lifespan:
    """A lifespan that awaits ``start`` before serving and ``stop`` once serving ends."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await start()
        yield
        await stop()

    return lifespan


def service_app(
    name: str, description: str, lifespan: Lifespan, readiness: ReadinessCheck
) -> FastAPI:
    """A service's app, titled ``Yobidashi <name>``, with the ops routes on it."""
    app = FastAPI(
        title=f"Yobidashi {name}", version="1", description=description, lifespan=lifespan
    )
    add_ops_routes(app, readiness)
    return app


def add_ops_routes(app: FastAPI, readiness: ReadinessCheck) -> None:
    """Liveness, readiness and metrics, hidden from the OpenAPI docs."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = dict(readiness())
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def bearer_json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A route's ``openapi_extra``: a required JSON body of ``schema``, behind a bearer token.

    The routes read the raw body themselves (for size limits and their own error bodies), so
    FastAPI cannot describe it.
    """
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "security": [{"bearer": []}],
    }


def run(app: FastAPI, settings: ServiceSettings, service: str) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then shut down gracefully (the lifespan drains)."""
    configure_logging(service, settings.log_level, settings.log_format)
    # uvicorn shuts down gracefully, restores the previous handler and re-raises the signal;
    # with this one installed, a graceful SIGTERM ends with exit code 0 instead of -15.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our structlog handler on the root logger formats uvicorn's lines too
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="*",
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
        server_header=False,
    )
