"""Helpers for tests, here and in other packages: run the simulator in-process, play the
customer's webhook server (`Receiver`, which checks every X-Twilio-Signature), and wait for
calls to settle without asserting on wall-clock speed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from twilio.request_validator import RequestValidator

from yobidashi_twilio_sim.app import Simulator, create_app
from yobidashi_twilio_sim.calls import TERMINAL_STATUSES
from yobidashi_twilio_sim.settings import SimSettings

WAIT_LIMIT = 20.0  # a hang guard only, never a speed assertion


@asynccontextmanager
async def serve_app(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on the running loop; yields its base URL (port 0 = free)."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{host}:{port}")
    while not server.started:
        if task.done():
            task.result()  # raises the startup error
            raise RuntimeError("uvicorn exited before it started")
        await asyncio.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        await task


@dataclass(frozen=True)
class RunningSim:
    base_url: str
    settings: SimSettings
    app: FastAPI

    @property
    def sim(self) -> Simulator:
        sim: Simulator = self.app.state.sim
        return sim


@asynccontextmanager
async def running_sim(settings: SimSettings | None = None) -> AsyncIterator[RunningSim]:
    """Start a simulator on a free port; point a Twilio client's `api.base_url` at
    `base_url`."""
    settings = settings or SimSettings()
    app = create_app(settings)
    async with serve_app(app) as base_url:
        yield RunningSim(base_url=base_url, settings=settings, app=app)


@dataclass(frozen=True)
class Hook:
    """One webhook request as the customer's server saw it."""

    method: str
    path: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    signature_valid: bool


Handler = Callable[[Hook], str | Response]


class Receiver:
    """The customer's webhook server: validates every X-Twilio-Signature, answers TwiML."""

    def __init__(self, auth_token: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.hooks: list[Hook] = []
        self.routes: dict[str, str | Handler] = {}
        self.base_url = ""
        self.app = FastAPI()
        self.app.add_api_route("/{path:path}", self._handle, methods=["GET", "POST"])

    async def _handle(self, request: Request, path: str) -> Response:
        # No proxy in front of us, so the URL we see is the URL the simulator signed.
        url = str(request.url)
        signature = request.headers.get("X-Twilio-Signature", "")
        if request.method == "POST":
            # keep_blank_values: the empty geo params are part of the signature.
            params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            valid = self.validator.validate(url, params, signature)
        else:
            params = dict(request.query_params)
            valid = self.validator.validate(url, {}, signature)
        hook = Hook(
            method=request.method,
            path="/" + path,
            url=url,
            params=params,
            headers=dict(request.headers),
            signature_valid=bool(valid),
        )
        self.hooks.append(hook)
        route = self.routes.get(hook.path, "<Response/>")
        result = route(hook) if callable(route) else route
        if isinstance(result, Response):
            return result
        return Response(result, media_type="text/xml")

    def url(self, path: str) -> str:
        return self.base_url + path

    def on(self, path: str, answer: str | Handler) -> str:
        self.routes[path] = answer
        return self.url(path)

    def at(self, path: str) -> list[Hook]:
        return [hook for hook in self.hooks if hook.path == path]


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll `check` until it returns something truthy (a hang guard, not a speed check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def call_journal(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await http.get(f"/sim/calls/{sid}")
    response.raise_for_status()
    journal: dict[str, Any] = response.json()
    return journal


async def wait_call_done(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    """Wait until the call is over and every callback it owes has been answered."""

    async def done() -> dict[str, Any] | None:
        journal = await call_journal(http, sid)
        sent = [e for e in journal["progress_events"] if e["sent"]]
        callbacks = [w for w in journal["webhooks"] if w["kind"] == "status-callback"]
        settled = all(w["response_status"] is not None or w["error"] for w in journal["webhooks"])
        if journal["status"] in TERMINAL_STATUSES and len(callbacks) == len(sent) and settled:
            return journal
        return None

    result: dict[str, Any] = await eventually(done, f"call {sid} to end")
    return result


async def wait_status(http: httpx.AsyncClient, sid: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        journal = await call_journal(http, sid)
        return journal if journal["status"] == status else None

    result: dict[str, Any] = await eventually(reached, f"call {sid} to be {status}")
    return result
