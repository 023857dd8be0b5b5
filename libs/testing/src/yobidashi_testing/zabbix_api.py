"""A tiny synchronous Zabbix 6.0 JSON-RPC client for tests.

Deliberately not pyzabbix: the product's acker uses pyzabbix, and tests that check the acker
must not share its code paths. 6.0 takes the session ID or API token in the request body's
``auth`` member (it ignores ``Authorization: Bearer``), and rejects ``auth`` on the methods in
`NO_AUTH_METHODS`.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

NO_AUTH_METHODS = frozenset({"apiinfo.version", "user.login", "user.checkAuthentication"})
# No proxies: the test Zabbix is on loopback, and a proxy from the environment would break it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

JsonParams = Mapping[str, Any] | Sequence[Any]


class ZabbixApiError(RuntimeError):
    """A JSON-RPC error answer from Zabbix."""

    def __init__(self, method: str, code: int, message: str, data: str) -> None:
        super().__init__(f"{method}: Zabbix API error {code}: {message} {data}".rstrip())
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class ZabbixUnreachable(ConnectionError):
    """The frontend did not answer (not running, or not HTTP 200 with a JSON-RPC body)."""


class ZabbixRpc:
    def __init__(self, url: str, *, auth: str | None = None, timeout: float = 30) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.auth = auth
        self.timeout = timeout
        self._ids = itertools.count(1)

    def login(self, username: str, password: str) -> str:
        """Log in; later calls carry the session ID. Returns it (32 hex characters)."""
        session = self.call("user.login", {"username": username, "password": password})
        if not isinstance(session, str):
            raise ZabbixApiError("user.login", 0, "unexpected result", repr(session))
        self.auth = session
        return session

    def with_token(self, token: str) -> ZabbixRpc:
        """A client for the same URL that authenticates with an API token."""
        return ZabbixRpc(self.url, auth=token, timeout=self.timeout)

    def version(self) -> str:
        return str(self.call("apiinfo.version", {}))

    def call(self, method: str, params: JsonParams | None = None) -> Any:
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": method,
            "params": {} if params is None else params,
            "id": next(self._ids),
        }
        if method not in NO_AUTH_METHODS:
            if self.auth is None:
                raise ValueError(f"{method} needs auth: call login() or pass auth=")
            body["auth"] = self.auth
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json-rpc"},
            method="POST",
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ZabbixUnreachable(f"{method}: HTTP {exc.code} from {self.url}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ZabbixUnreachable(f"{method}: {self.url} unreachable: {exc}") from exc
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise ZabbixUnreachable(f"{method}: not JSON from {self.url}: {raw[:200]!r}") from exc
        if "error" in answer:
            error = answer["error"]
            raise ZabbixApiError(
                method, int(error.get("code", 0)), error.get("message", ""), error.get("data", "")
            )
        return answer["result"]
