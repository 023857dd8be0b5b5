"""A Zabbix 6.0 JSON-RPC stand-in, so ``make run`` shows acknowledgements without a Zabbix.

It answers the five methods the acker uses, the way Zabbix 6.0 does (auth in the body, numbers
in ``event.acknowledge``'s answer, a second acknowledgement stored as a message only). Every
event id it is asked about is an open problem the first time, as if Zabbix had raised it.
It is for trying Yobidashi out; the tests of the acker run against a real Zabbix.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

VERSION = "6.0.14"
USER = "yobidashi-acker"
ACTION_ACKNOWLEDGE = 2


@dataclass
class StandInEvent:
    eventid: str
    acknowledged: bool = False
    acknowledges: list[dict[str, str]] = field(default_factory=list)


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(data)
        self.error = {"code": code, "message": message, "data": data}


class ZabbixStandIn:
    def __init__(self, api_token: str) -> None:
        self.api_token = api_token
        self.sessions: set[str] = set()
        self.events: dict[str, StandInEvent] = {}

    def event(self, eventid: str) -> StandInEvent:
        return self.events.setdefault(eventid, StandInEvent(eventid))

    def recent_acks(self, limit: int = 20) -> list[dict[str, str]]:
        acks = [
            {"eventid": e.eventid, **ack} for e in self.events.values() for ack in e.acknowledges
        ]
        return sorted(acks, key=lambda a: a["clock"], reverse=True)[:limit]

    def call(self, body: dict[str, Any]) -> Any:
        method, params = body.get("method"), body.get("params")
        if body.get("jsonrpc") != "2.0" or not isinstance(method, str) or params is None:
            raise RpcError(-32600, "Invalid request.", "Not a valid JSON-RPC request.")
        if method == "apiinfo.version":
            return VERSION
        if method == "user.login":
            session = secrets.token_hex(16)
            self.sessions.add(session)
            return session
        auth = body.get("auth")
        if auth != self.api_token and auth not in self.sessions:
            raise RpcError(-32602, "Invalid params.", "Not authorized.")
        if method == "user.logout":
            self.sessions.discard(auth)
            return True
        if method == "event.get":
            return [self._event_out(str(i), params) for i in params.get("eventids", []) if i != "0"]
        if method == "event.acknowledge":
            return self._acknowledge(params)
        raise RpcError(-32601, "Method not found.", f"{method} is not in the stand-in")

    def _event_out(self, eventid: str, params: dict[str, Any]) -> dict[str, Any]:
        event = self.event(eventid)
        out: dict[str, Any] = {
            "eventid": eventid,
            "value": "1",
            "acknowledged": "1" if event.acknowledged else "0",
            "r_eventid": "0",
        }
        if "select_acknowledges" in params:  # 6.0's spelling
            out["acknowledges"] = list(event.acknowledges)
        if "selectRelatedObject" in params:
            out["relatedObject"] = {"triggerid": "1", "manual_close": "1"}
        return out

    def _acknowledge(self, params: dict[str, Any]) -> dict[str, Any]:
        eventids = [str(e) for e in params.get("eventids", [])]
        action = int(params.get("action", 0))
        for eventid in eventids:
            event = self.event(eventid)
            stored = action & ~ACTION_ACKNOWLEDGE if event.acknowledged else action
            event.acknowledged = event.acknowledged or bool(action & ACTION_ACKNOWLEDGE)
            event.acknowledges.append(
                {
                    "clock": str(int(time.time())),
                    "action": str(stored),
                    "message": str(params.get("message", "")),
                    "username": USER,
                    "userid": "3",
                }
            )
        return {"eventids": [int(e) for e in eventids]}


def router(standin: ZabbixStandIn) -> APIRouter:
    routes = APIRouter()

    @routes.post("/zabbix/api_jsonrpc.php", include_in_schema=False)
    async def api(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            answer = {"jsonrpc": "2.0", "result": standin.call(body), "id": body.get("id")}
        except RpcError as exc:
            answer = {"jsonrpc": "2.0", "error": exc.error, "id": body.get("id")}
        return JSONResponse(answer)

    return routes
