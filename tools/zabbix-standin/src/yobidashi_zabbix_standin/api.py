"""The JSON-RPC methods a Zabbix client like the acker uses, answered as one Zabbix version would.

``apiinfo.version``, ``user.login``, ``user.logout``, ``event.get`` and ``event.acknowledge``,
with the version's rules (`versions.ApiRules`) on where auth may go and which parameters
exist. Errors carry Zabbix's own codes and texts, so a client's error classification is
exercised for real. Everything here is plain data and synchronous; `app.StandInApp` puts HTTP
(and the faults) around it.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from yobidashi_zabbix_standin.faults import Faults
from yobidashi_zabbix_standin.versions import (
    SELECT_ACKS_NEW,
    SELECT_ACKS_OLD,
    ApiRules,
    parse,
)

USER = "yobidashi-acker"
ANONYMOUS_METHODS = frozenset({"apiinfo.version", "user.login"})
TOKEN_LENGTH = 64  # Zabbix tells an API token from a session id by its length

ACTION_CLOSE = 1
ACTION_ACKNOWLEDGE = 2
ACTION_MESSAGE = 4


class RpcError(Exception):
    """A JSON-RPC ``error`` member, as Zabbix words it."""

    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(data)
        self.error = {"code": code, "message": message, "data": data}


def invalid_params(data: str) -> RpcError:
    return RpcError(-32602, "Invalid params.", data)


def application_error(data: str) -> RpcError:
    return RpcError(-32500, "Application error.", data)


@dataclass
class StandInEvent:
    eventid: str
    value: str = "1"  # "1" a problem, "0" a recovery event
    acknowledged: bool = False
    r_eventid: str = "0"  # the recovery event once resolved
    manual_close: bool = True  # the trigger allows closing by hand
    acknowledges: list[dict[str, str]] = field(default_factory=list)


class Write(NamedTuple):
    """An ``event.acknowledge`` that Zabbix accepted through the API, per event."""

    event_id: str
    action: int
    message: str


@dataclass
class Seen:
    """One request as the frontend received it (header names in lower case)."""

    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    arrived: float  # time.time() when the request started to arrive
    answered: float | None = None  # ... and when its answer went out (None: no answer)

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


class ZabbixStandIn:
    """One Zabbix frontend's API: its version, users, tokens, sessions and events.

    ``auto_problems``: every event id asked about is an open problem the first time, as if
    Zabbix had raised it (``make run``, the benchmarks). Otherwise only `add_event`'s exist.
    ``basic_auth``: (user, password) a proxy in front demands; the header then also reaches
    PHP, as it does behind a typical nginx/Apache set-up.
    """

    def __init__(
        self,
        version: str = "6.0.14",
        *,
        tokens: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        auto_problems: bool = False,
        basic_auth: tuple[str, str] | None = None,
        keep_requests: int = 10_000,
    ) -> None:
        self.version = version
        self.tokens: dict[str, str] = dict(tokens or {})  # secret -> username
        self.users: dict[str, str] = dict(users or {})  # username -> password
        self.sessions: dict[str, str] = {}  # session id -> username
        self.events: dict[str, StandInEvent] = {}
        self.auto_problems = auto_problems
        self.basic_auth = basic_auth
        self.faults = Faults()
        self.seen: deque[Seen] = deque(maxlen=keep_requests)
        self.writes: list[Write] = []
        self.deprecations: list[str] = []  # what a real 7.0 would log as "PHP Deprecated"
        self.inflight = 0
        self.max_inflight = 0
        self.url = ""  # the frontend's base URL while `serve` serves it

    @property
    def version(self) -> str:
        return self.rules.text

    @version.setter
    def version(self, text: str) -> None:
        if parse(text) < (6, 0):
            raise ValueError(f"the stand-in knows Zabbix 6.0 and later, not {text}")
        self.rules = ApiRules(text)

    # -- set-up and inspection -------------------------------------------------------------------

    def add_event(self, eventid: str, **state: Any) -> StandInEvent:
        event = StandInEvent(eventid, **state)
        self.events[eventid] = event
        return event

    def acknowledge_as(
        self, username: str, eventid: str, action: int, message: str, clock: int | None = None
    ) -> None:
        """An update someone made elsewhere (the Zabbix UI, another tool): not one of `writes`."""
        self._apply(self.events[eventid], action, message, username, clock)

    def calls(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    def recent_acks(self, limit: int = 20) -> list[dict[str, str]]:
        acks = [
            {"eventid": e.eventid, **ack} for e in self.events.values() for ack in e.acknowledges
        ]
        return sorted(acks, key=lambda a: a["clock"], reverse=True)[:limit]

    # -- JSON-RPC --------------------------------------------------------------------------------

    def call(self, body: Any, authorization: str = "") -> Any:
        """The result of one JSON-RPC request; raises `RpcError` as Zabbix would answer."""
        if (
            not isinstance(body, dict)
            or body.get("jsonrpc") != "2.0"
            or not isinstance(body.get("method"), str)
            or "params" not in body
        ):
            raise RpcError(
                -32600, "Invalid request.", "The received JSON is not a valid JSON-RPC request."
            )
        rules = self.rules
        if "auth" in body and not rules.accepts_body_auth:
            raise RpcError(
                -32600, "Invalid request.", 'Invalid parameter "/": unexpected parameter "auth".'
            )
        method, params = body["method"], body["params"]
        bearer = None
        if rules.reads_bearer_header and authorization.startswith("Bearer "):
            bearer = authorization[len("Bearer ") :]
        foreign_header = rules.header_only and bool(authorization) and bearer is None
        body_auth = body.get("auth")
        if method in ANONYMOUS_METHODS:
            if body_auth is not None:
                raise invalid_params(
                    f'The "{method}" method must be called without the "auth" parameter.'
                )
            if bearer is not None or foreign_header:
                raise invalid_params(
                    f'The "{method}" method must be called without authorization header.'
                )
            return self._anonymous(method, params)
        if foreign_header:
            raise invalid_params("Not authorized.")
        if bearer is None and body_auth is not None and rules.body_auth_deprecated:
            self.deprecations.append('Parameter "/auth" is deprecated.')
        user = self._authenticate(bearer if bearer is not None else body_auth)
        return self._authenticated(method, params, user)

    def _anonymous(self, method: str, params: Any) -> Any:
        if method == "apiinfo.version":
            return self.version
        if not isinstance(params, dict):
            raise invalid_params('Invalid parameter "/": an array is expected.')
        if "user" in params:
            if not self.rules.accepts_login_user:
                raise invalid_params('Invalid parameter "/": unexpected parameter "user".')
            if "username" in params:
                raise invalid_params('Parameter "user" is deprecated.')
        username = params.get("username", params.get("user"))
        password = params.get("password")
        if username not in self.users or self.users[username] != password:
            raise application_error(
                "Incorrect user name or password or account is temporarily blocked."
            )
        session = secrets.token_hex(16)
        self.sessions[session] = str(username)
        return session

    def _authenticate(self, secret: Any) -> str:
        if not isinstance(secret, str) or not secret:
            raise invalid_params("Not authorized.")
        if secret in self.tokens:
            return self.tokens[secret]
        if secret in self.sessions:
            return self.sessions[secret]
        if len(secret) == TOKEN_LENGTH:
            raise invalid_params("Not authorized.")
        raise invalid_params("Session terminated, re-login, please.")

    def _authenticated(self, method: str, params: Any, user: str) -> Any:
        if method == "user.logout":
            for session in [s for s, u in self.sessions.items() if u == user]:
                del self.sessions[session]
            return True
        if not isinstance(params, dict):
            raise invalid_params('Invalid parameter "/": an array is expected.')
        if method == "event.get":
            return self._event_get(params)
        if method == "event.acknowledge":
            return self._acknowledge(params, user)
        raise RpcError(
            -32601, "Method not found.", "The requested remote-procedure does not exist."
        )

    def _event(self, eventid: str) -> StandInEvent | None:
        # "0" is never an event: the cheap probe call asks for it.
        if (
            eventid not in self.events
            and self.auto_problems
            and eventid.isdigit()
            and eventid != "0"
        ):
            return self.add_event(eventid)
        return self.events.get(eventid)

    def _event_get(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        rules = self.rules
        asked = [o for o in (SELECT_ACKS_OLD, SELECT_ACKS_NEW) if o in params]
        unknown = [o for o in asked if o not in rules.acknowledges_options]
        if unknown and not rules.ignores_unknown_options:
            raise invalid_params(f'Invalid parameter "/": unexpected parameter "{unknown[0]}".')
        known = [o for o in asked if o in rules.acknowledges_options]
        if len(known) > 1:
            raise invalid_params(
                f'Invalid parameter "/": "{SELECT_ACKS_OLD}" and "{SELECT_ACKS_NEW}" cannot be '
                "used together."
            )
        if SELECT_ACKS_OLD in known and SELECT_ACKS_NEW in rules.acknowledges_options:
            self.deprecations.append(f'Parameter "/{SELECT_ACKS_OLD}" is deprecated.')
        found = []
        for eventid in params.get("eventids", []):
            event = self._event(str(eventid))
            if event is None:
                continue
            out: dict[str, Any] = {
                "eventid": event.eventid,
                "value": event.value,
                "acknowledged": "1" if event.acknowledged else "0",
                "r_eventid": event.r_eventid,
                "objectid": "23133",
            }
            if known:
                out["acknowledges"] = [dict(a) for a in event.acknowledges]
            if "selectRelatedObject" in params:
                out["relatedObject"] = {
                    "triggerid": "23133",
                    "manual_close": "1" if event.manual_close else "0",
                }
            found.append(out)
        return found

    def _acknowledge(self, params: dict[str, Any], user: str) -> dict[str, Any]:
        try:
            action = int(params.get("action", 0))
        except (TypeError, ValueError):
            action = 0
        if action & ~self.rules.action_limit or action == 0:
            raise invalid_params(
                f'Incorrect value for field "action": unexpected value "{action}".'
            )
        message = params.get("message", "")
        if action & ACTION_MESSAGE and not message:
            raise invalid_params('Incorrect value for field "message": cannot be empty.')
        eventids = [str(e) for e in params.get("eventids", [])]
        events = [self._event(e) for e in eventids]
        if not events or any(e is None or e.value != "1" for e in events):
            raise application_error("No permissions to referred object or it does not exist!")
        if action & ACTION_CLOSE and any(e is not None and not e.manual_close for e in events):
            raise application_error("Cannot close problem: trigger does not allow manual closing.")
        for event in events:
            assert event is not None
            self._apply(event, action, str(message), user, None)
            self.writes.append(Write(event.eventid, action, str(message)))
        # Numbers here, while every *.get answers ids as strings (measured on 6.0).
        return {"eventids": [int(e) for e in eventids]}

    @staticmethod
    def _apply(
        event: StandInEvent, action: int, message: str, username: str, clock: int | None
    ) -> None:
        # A second acknowledgement is silently stored as a message only (measured on 6.0).
        stored = action & ~ACTION_ACKNOWLEDGE if event.acknowledged else action
        event.acknowledged = event.acknowledged or bool(action & ACTION_ACKNOWLEDGE)
        event.acknowledges.append(
            {
                "clock": str(clock if clock is not None else int(time.time())),
                "message": message,
                "action": str(stored),
                "userid": "5",
                "username": username,
            }
        )
