"""What a failed Zabbix API call means for the acknowledgement waiting on it.

Zabbix's JSON-RPC error codes say little: a missing event and a database failure are both
``-32500 Application error.`` (the frontend maps its internal and permission errors to the same
code), and an expired session is ``-32602 Invalid params.``. So the classification reads the
``data`` text first and the code second. The texts are Zabbix's own (6.0 frontend source,
checked against the running 6.0.14, and the 7.x source).

======================  =========  =================================================
kind                    retried?   examples
======================  =========  =================================================
transport               yes        connection refused/reset, DNS failure
timeout                 yes        no answer within ``ZABBIX_TIMEOUT``
server                  yes        HTTP 5xx, HTTP 412, empty or non-JSON body, database
                                   down, "Zabbix server is not running", internal error
auth                    yes, loud  "Not authorized.", "Session terminated, re-login,
                                   please.", "API token expired.", wrong password,
                                   HTTP 401/403 from a proxy
config                  yes, loud  TLS verification failed, wrong URL (HTTP 404),
                                   unsupported version, "unexpected parameter "auth"",
                                   "must be called without authorization header",
                                   the user's role may not call the method or
                                   acknowledge/comment at all
not_found               no         "No permissions to referred object or it does not
                                   exist!" (unknown event, or no read access to it)
invalid                 no         any other "Invalid params." answer
cannot_close            no         "Cannot close problem: trigger does not allow manual
                                   closing.", or the role may not close problems (the
                                   acker acknowledges without closing instead)
======================  =========  =================================================

"Loud" means a metric and an error log line: auth and config problems need a human, but the
acknowledgement stays on the bus until they are fixed rather than being lost.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    TRANSPORT = "transport"
    TIMEOUT = "timeout"
    SERVER = "server"
    AUTH = "auth"
    CONFIG = "config"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    CANNOT_CLOSE = "cannot_close"

    @property
    def transient(self) -> bool:
        return self not in _PERMANENT

    @property
    def loud(self) -> bool:
        return self in (ErrorKind.AUTH, ErrorKind.CONFIG)


_PERMANENT = frozenset({ErrorKind.NOT_FOUND, ErrorKind.INVALID, ErrorKind.CANNOT_CLOSE})


class ZabbixError(Exception):
    """A Zabbix API call that did not succeed, with what it means for a retry."""

    def __init__(
        self,
        kind: ErrorKind,
        method: str,
        message: str,
        *,
        code: int | None = None,
        data: str = "",
        http_status: int | None = None,
    ) -> None:
        super().__init__(f"{method}: {message}")
        self.kind = kind
        self.method = method
        self.message = message
        self.code = code
        self.data = data
        self.http_status = http_status

    @property
    def transient(self) -> bool:
        return self.kind.transient

    @property
    def session_expired(self) -> bool:
        """A session-ID login that a new ``user.login`` would fix."""
        text = self.data.lower()
        return self.kind is ErrorKind.AUTH and (
            "session terminated" in text or text.startswith("not authori")
        )

    @property
    def auth_transport_rejected(self) -> bool:
        """The server refused where we put the auth: its version changed under us."""
        text = self.data.lower()
        return 'unexpected parameter "auth"' in text or 'without the "auth" parameter' in text


# Lower-cased fragments of Zabbix's error texts, checked in this order.
_AUTH_TEXTS = (
    "not authorized",
    "not authorised",
    "session terminated",
    "api token expired",
    "incorrect user name or password",
    "login name or password is incorrect",
    "account is temporarily blocked",
    "no permissions for system access",
    "session id or token is expected",
)
_CONFIG_TEXTS = (
    'unexpected parameter "auth"',
    'without the "auth" parameter',
    "without authorization header",  # a no-auth method got one (8.0: even basic auth's)
    'unexpected parameter "user"',
    'parameter "user" is deprecated',
    "no permissions to call",  # the user role's API access list forbids the method
    "no permissions to acknowledge problems",
    "no permissions to add problem comments",
)
_SERVER_TEXTS = (
    "zabbix server is not running",
    "connection to zabbix server",
    "error connecting to database",
    "database error",
    "sql statement execution has failed",
    "system error occurred",
)
_NOT_FOUND_TEXT = "no permissions to referred object or it does not exist"
# The trigger forbids manual close, or the user's role may not close: ack without closing.
_CANNOT_CLOSE_TEXTS = ("cannot close problem", "no permissions to close problems")


def classify_rpc_error(code: int, message: str, data: str) -> ErrorKind:
    """The kind of a JSON-RPC ``error`` member (``code``, ``message``, ``data``)."""
    text = f"{message} {data}".lower()
    if any(fragment in text for fragment in _CANNOT_CLOSE_TEXTS):
        return ErrorKind.CANNOT_CLOSE
    for fragment in _AUTH_TEXTS:
        if fragment in text:
            return ErrorKind.AUTH
    for fragment in _CONFIG_TEXTS:
        if fragment in text:
            return ErrorKind.CONFIG
    for fragment in _SERVER_TEXTS:
        if fragment in text:
            return ErrorKind.SERVER
    if _NOT_FOUND_TEXT in text:
        return ErrorKind.NOT_FOUND
    if code == -32602:
        return ErrorKind.INVALID
    if code in (-32600, -32601, -32700):
        # Our request is malformed or the method is unknown here: a client/server mismatch
        # that a human must fix; failing every ack permanently would lose them.
        return ErrorKind.CONFIG
    # -32500 (application error: the frontend also maps internal errors here), -32603,
    # -32400, -32300, and 6.0's code 1 when the frontend itself cannot start (database down).
    return ErrorKind.SERVER


def classify_http_status(status: int) -> ErrorKind:
    if status in (401, 403, 407):
        return ErrorKind.AUTH
    if status == 412 or status >= 500 or status == 429:
        return ErrorKind.SERVER
    return ErrorKind.CONFIG


def rpc_error(method: str, error: Any) -> ZabbixError:
    """A `ZabbixError` from a JSON-RPC ``error`` member, whatever shape it has."""
    if not isinstance(error, dict):
        return ZabbixError(ErrorKind.SERVER, method, f"malformed error: {error!r}"[:300])
    try:
        code = int(error.get("code", 0))
    except (TypeError, ValueError):
        code = 0
    message = str(error.get("message", ""))
    data = str(error.get("data", ""))
    kind = classify_rpc_error(code, message, data)
    return ZabbixError(
        kind, method, f"Zabbix API error {code}: {message} {data}".strip(), code=code, data=data
    )
