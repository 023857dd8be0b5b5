"""One JSON-RPC request to Zabbix over httpx, and what its failure means.

The wire format, per request: ``{"jsonrpc": "2.0", "method", "params", "id"}``, plus where
the caller says the credential goes (`Auth`): the body's ``auth`` or ``Authorization: Bearer``.
Methods called without `Auth` carry no credential at all, neither in the body nor as a header:
``apiinfo.version`` and ``user.login`` refuse one. The only other Authorization header ever
sent is the HTTP basic auth of a proxy in front (``ZABBIX_HTTP_USER``), which that proxy needs
on every request; the version rules never combine it with a Bearer header.

Every failure becomes a `ZabbixError` with its `ErrorKind`: no answer in time, no connection,
TLS, an HTTP status, a body that is not JSON-RPC, or Zabbix's own error.
"""

from __future__ import annotations

import base64
import itertools
import json
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import httpx

from yobidashi_acker import __version__
from yobidashi_acker.zabbix.connection import ZabbixConnection
from yobidashi_acker.zabbix.errors import ErrorKind, ZabbixError, classify_http_status, rpc_error
from yobidashi_acker.zabbix.rules import AuthPlacement

Params = Mapping[str, Any] | Sequence[Any]


class Auth(NamedTuple):
    """The credential of an authenticated call (a session id or an API token), and its place."""

    secret: str
    placement: AuthPlacement


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class JsonRpc:
    def __init__(self, connection: ZabbixConnection) -> None:
        self.url = connection.api_url
        self._proxy_auth: str | None = None
        if connection.http_user:
            pair = f"{connection.http_user}:{connection.http_password or ''}".encode()
            self._proxy_auth = "Basic " + base64.b64encode(pair).decode()
        limit = connection.max_connections
        self._http = httpx.AsyncClient(
            verify=connection.tls(),
            # Queueing for one of our own connections is not Zabbix being slow: no pool timeout.
            timeout=httpx.Timeout(connection.timeout, pool=None),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            headers={
                "User-Agent": f"yobidashi-acker/{__version__}",
                "Content-Type": "application/json-rpc",
            },
            # HTTPS_PROXY/NO_PROXY are how a proxy is configured here, so the environment
            # counts; it cannot replace ZABBIX_CA_BUNDLE (an explicit context), and httpx 0.28
            # reads no ~/.netrc credentials.
            trust_env=True,
            follow_redirects=False,  # a redirect means ZABBIX_URL is wrong: say so
        )
        self._ids = itertools.count(1)

    async def call(
        self, method: str, params: Params, auth: Auth | None, *, read_timeout: float | None = None
    ) -> Any:
        """The ``result`` of ``method``; raises `ZabbixError` when there is none."""
        payload: dict[str, Any] = {
            "jsonrpc": "2.0",
            "method": method,
            "params": params,
            "id": next(self._ids),
        }
        headers: dict[str, str] = {}
        if self._proxy_auth is not None:
            headers["Authorization"] = self._proxy_auth
        if auth is not None and auth.placement is AuthPlacement.HEADER:
            assert self._proxy_auth is None, "the rules never put a Bearer behind basic auth"
            headers["Authorization"] = f"Bearer {auth.secret}"
        elif auth is not None:
            payload["auth"] = auth.secret
        extra: dict[str, Any] = {} if read_timeout is None else {"timeout": read_timeout}
        try:
            response = await self._http.post(
                self.url, content=json.dumps(payload).encode(), headers=headers, **extra
            )
        except httpx.TimeoutException as exc:
            raise ZabbixError(ErrorKind.TIMEOUT, method, f"no answer: {exc!r}") from None
        except httpx.UnsupportedProtocol as exc:
            raise ZabbixError(ErrorKind.CONFIG, method, f"not an http(s) URL: {exc}") from None
        except httpx.TransportError as exc:
            if (tls := _tls_failure(exc)) is not None:
                raise ZabbixError(ErrorKind.CONFIG, method, f"TLS failed: {tls}") from None
            raise ZabbixError(ErrorKind.TRANSPORT, method, f"{type(exc).__name__}: {exc}") from None
        return self._result(method, response)

    @staticmethod
    def _result(method: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status != 200:
            text = f"HTTP {status}"
            if location := response.headers.get("location"):
                text += f" (redirected to {location}: check ZABBIX_URL)"
            raise ZabbixError(classify_http_status(status), method, text, http_status=status)
        if not response.content:
            raise ZabbixError(ErrorKind.SERVER, method, "empty answer", http_status=status)
        try:
            answer = response.json()
        except ValueError:
            head = response.text[:120].replace("\n", " ")
            raise ZabbixError(
                ErrorKind.SERVER, method, f"answer is not JSON: {head!r}", http_status=status
            ) from None
        if not isinstance(answer, dict):
            raise ZabbixError(ErrorKind.SERVER, method, "answer is not a JSON-RPC object")
        if "error" in answer:
            raise rpc_error(method, answer["error"])
        if "result" not in answer:
            raise ZabbixError(ErrorKind.SERVER, method, "answer has no result")
        return answer["result"]

    async def aclose(self) -> None:
        await self._http.aclose()
