"""The stand-in over HTTP: a small ASGI application, as a Zabbix frontend answers.

- ``POST …/api_jsonrpc.php``: the API. Like the frontend: HTTP 412 unless the content type is
  JSON, a JSON-RPC answer otherwise; with ``basic_auth`` set, a proxy's 401 first.
- ``GET …/healthz``: for process supervisors and compose.
- ``GET|PUT …/standin/faults``: read or change the standing faults (``down``,
  ``http_status``, ``delay``) at run time, e.g. to show an outage in ``make run``.

Any path ending in those names is served: Zabbix frontends live at ``/`` (containers) or
``/zabbix`` (packages), and the devstack mounts this under ``/zabbix``.

Raw ASGI rather than a web framework, because a fault must be able to close the connection
without an answer, which only the ASGI messages themselves can do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from yobidashi_zabbix_standin.api import RpcError, Seen, ZabbixStandIn
from yobidashi_zabbix_standin.faults import Fault

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON_TYPES = ("application/json-rpc", "application/json", "application/jsonrequest")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    drop: bool = False  # close the connection instead of answering
    extra: tuple[tuple[str, str], ...] = ()


DROPPED = Reply(200, drop=True)


def _json(data: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(data).encode())


def _error_page(status: int) -> Reply:
    """What a proxy or PHP answers instead of the API: HTML, not JSON."""
    return Reply(status, f"<html><body><h1>HTTP {status}</h1></body></html>".encode(), "text/html")


class StandInApp:
    def __init__(self, standin: ZabbixStandIn) -> None:
        self.standin = standin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        arrived = time.time()
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        raw = await _body(receive)
        path, verb = str(scope.get("path", "")), str(scope.get("method", "GET"))
        if path.endswith("/api_jsonrpc.php") and verb == "POST":
            reply = await self._api(headers, raw, arrived)
        elif path.endswith("/healthz") and verb == "GET":
            reply = Reply(200, b"ok", "text/plain")
        elif path.endswith("/standin/faults") and verb in ("GET", "PUT"):
            reply = self._faults(raw if verb == "PUT" else None)
        else:
            reply = Reply(404, b"not found", "text/plain")
        await _send(send, reply)

    async def _api(self, headers: dict[str, str], raw: bytes, arrived: float) -> Reply:
        standin = self.standin
        if standin.basic_auth is not None:
            user, password = standin.basic_auth
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if headers.get("authorization") != expected:
                return Reply(
                    401,
                    b"<html>401 Authorization Required</html>",
                    "text/html",
                    extra=(("www-authenticate", 'Basic realm="zabbix"'),),
                )
        if headers.get("content-type", "").split(";")[0].strip() not in JSON_TYPES:
            return Reply(412)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        method = str(body.get("method", "")) if isinstance(body, dict) else ""
        seen = Seen(method, body if isinstance(body, dict) else {}, headers, arrived)
        standin.seen.append(seen)
        standin.inflight += 1
        standin.max_inflight = max(standin.max_inflight, standin.inflight)
        try:
            reply = await self._answer(body, method, headers)
        finally:
            standin.inflight -= 1
        if not reply.drop:
            seen.answered = time.time()
        return reply

    async def _answer(self, body: Any, method: str, headers: dict[str, str]) -> Reply:
        standin, faults = self.standin, self.standin.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.down:
            return DROPPED
        if faults.http_status is not None:
            return _error_page(faults.http_status)
        if faults.raw_answer is not None:
            return Reply(200, faults.raw_answer, "text/html")
        fault = faults.take(method)
        if fault is not None and not fault.after_applying:
            return _reply_for(fault, body)
        if method == "event.acknowledge" and faults.gate is not None:
            await faults.gate.wait()
        if body is None:
            error = {"code": -32700, "message": "Parse error.", "data": "Invalid JSON."}
            return _json({"jsonrpc": "2.0", "error": error, "id": None})
        request_id = body.get("id") if isinstance(body, dict) else None
        try:
            result = standin.call(body, headers.get("authorization", ""))
            answer: dict[str, Any] = {"jsonrpc": "2.0", "result": result, "id": request_id}
        except RpcError as exc:
            answer = {"jsonrpc": "2.0", "error": exc.error, "id": request_id}
        if fault is not None:  # it took effect; the answer is lost on the way
            return DROPPED
        return _json(answer)

    def _faults(self, raw: bytes | None) -> Reply:
        faults = self.standin.faults
        if raw is not None:
            try:
                change = json.loads(raw)
                if not isinstance(change, dict) or set(change) - {"down", "http_status", "delay"}:
                    raise ValueError("only down, http_status and delay can be set")
                faults.down = bool(change.get("down", faults.down))
                status = change.get("http_status", faults.http_status)
                faults.http_status = None if status is None else int(status)
                faults.delay = max(float(change.get("delay", faults.delay)), 0.0)
            except (ValueError, TypeError) as exc:
                return _json({"error": str(exc)}, 422)
        return _json(
            {
                "version": self.standin.version,
                "down": faults.down,
                "http_status": faults.http_status,
                "delay": faults.delay,
                "scripted": faults.scripted,
            }
        )


def _reply_for(fault: Fault, body: Any) -> Reply:
    if fault.drop:
        return DROPPED
    if fault.http_status is not None:
        return _error_page(fault.http_status)
    assert fault.rpc_error is not None
    code, message, data = fault.rpc_error
    request_id = body.get("id") if isinstance(body, dict) else None
    error = {"code": code, "message": message, "data": data}
    return _json({"jsonrpc": "2.0", "error": error, "id": request_id})


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, reply: Reply) -> None:
    if reply.drop:
        # Promise a body and return without it: the server closes the connection mid-answer,
        # which a client sees as a broken connection (ASGI has no other way to hang up).
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]}
        )
        return
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
        *((k.encode(), v.encode()) for k, v in reply.extra),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
