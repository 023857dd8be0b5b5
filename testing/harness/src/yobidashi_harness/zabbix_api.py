"""A tiny synchronous Zabbix JSON-RPC client for tests, correct on 6.0 and 7.0.

Deliberately not pyzabbix: the product's acker uses its own client, and tests that check the
acker must not share its code paths.

How a session ID or API token travels depends on the server, so the client asks
``apiinfo.version`` once (lazily, on the first authenticated call):

- before 6.4 it goes in the request body's ``auth`` member; 6.0 ignores ``Authorization``.
- from 6.4 it goes in ``Authorization: Bearer <token>`` (the scheme is case-sensitive). 7.0
  still takes body ``auth`` but logs a PHP ``Deprecated`` line per call, and 7.2 removed it.

`NO_AUTH_METHODS` never carry either: 6.0 rejects them with a body ``auth``, and 7.0 rejects
``apiinfo.version`` and ``user.login`` when an ``Authorization`` header is present.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

NO_AUTH_METHODS = frozenset({"apiinfo.version", "user.login", "user.checkAuthentication"})
HEADER_AUTH_SINCE = (6, 4)
# No proxies: the test Zabbix is on loopback, and a proxy from the environment would break it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_VERSION = re.compile(r"^(\d+)\.(\d+)")

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


def parse_version(version: str) -> tuple[int, int]:
    """``"7.0.22"`` -> ``(7, 0)``."""
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"not a Zabbix version: {version!r}")
    return int(match[1]), int(match[2])


class ZabbixRpc:
    def __init__(
        self,
        url: str,
        *,
        auth: str | None = None,
        timeout: float = 30,
        api_version: str | None = None,
    ) -> None:
        """``api_version`` (e.g. "7.0.22") saves the ``apiinfo.version`` round trip."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.auth = auth
        self.timeout = timeout
        self._api_version = api_version
        self._ids = itertools.count(1)

    @property
    def api_version(self) -> str:
        """The server's version, e.g. "7.0.22" (asked once, then remembered)."""
        if self._api_version is None:
            self._api_version = self.version()
        return self._api_version

    @property
    def api_release(self) -> tuple[int, int]:
        """``(major, minor)`` of the server: what API differences are keyed on."""
        return parse_version(self.api_version)

    def login(self, username: str, password: str) -> str:
        """Log in; later calls carry the session ID. Returns it (32 hex characters).

        ``username`` is the only spelling 6.4+ accepts (5.4-6.2 also took ``user``).
        """
        session = self.call("user.login", {"username": username, "password": password})
        if not isinstance(session, str):
            raise ZabbixApiError("user.login", 0, "unexpected result", repr(session))
        self.auth = session
        return session

    def with_token(self, token: str) -> ZabbixRpc:
        """A client for the same URL that authenticates with an API token."""
        return ZabbixRpc(self.url, auth=token, timeout=self.timeout, api_version=self._api_version)

    def version(self) -> str:
        return str(self.call("apiinfo.version", {}))

    def _prepare(
        self, method: str, params: JsonParams | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The JSON-RPC body and the HTTP headers for one call."""
        body: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": method,
            "params": {} if params is None else params,
            "id": next(self._ids),
        }
        headers = {"Content-Type": "application/json-rpc"}
        if method not in NO_AUTH_METHODS:
            if self.auth is None:
                raise ValueError(f"{method} needs auth: call login() or pass auth=")
            if self.api_release >= HEADER_AUTH_SINCE:
                headers["Authorization"] = f"Bearer {self.auth}"
            else:
                body["auth"] = self.auth
        return body, headers

    def call(self, method: str, params: JsonParams | None = None) -> Any:
        body, headers = self._prepare(method, params)
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
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
