"""What differs between the Zabbix API versions we support (6.0 to 8.0), as explicit rules.

Every rule is a pure function of the version ``apiinfo.version`` reported, so it is tested on
its own and the client never guesses. Sources: the measured 6.0.14 and 7.0.22 facts in
``/work/shared/notes/zabbix.md`` and ``zabbix-7-and-8.md``, Zabbix's API changelogs, the 7.x
frontend source, and 8.0's documentation.

===========================  ===========================================================
login parameter              ``username`` since 5.4; ``user`` was deprecated in 5.4 and
                             removed in 6.4. We never send ``user``.
auth transport               request body ``auth`` before 6.4 (6.0 ignores the header);
                             ``Authorization: Bearer`` from 6.4 (the scheme is
                             case-sensitive); 7.0 still takes body ``auth`` but logs it as
                             deprecated; 7.2 removed it (``Invalid parameter "/": unexpected
                             parameter "auth".``); 8.0 takes API auth only in that header.
no-auth methods              ``apiinfo.version`` and ``user.login`` must carry no auth: not in
                             the body, and (measured on 7.0) no Bearer header either.
acknowledges on event.get    ``select_acknowledges`` before 7.0; ``selectAcknowledges`` from
                             7.0 (which still takes the old name as deprecated, but never
                             both at once). 6.0 silently ignores an unknown option, newer
                             versions reject it, so the client also falls back at run time.
===========================  ===========================================================

HTTP basic auth in front of the frontend (``ZABBIX_HTTP_USER``) takes the one
``Authorization`` header. From 6.4 to 7.0 we then put the API auth in the body, which those
versions still accept; 7.2+ accepts API auth only in that header (8.0 refuses any other scheme
in it, even on ``apiinfo.version``), so the combination cannot work there and is reported as a
configuration error instead of failing obscurely.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

# Methods that Zabbix rejects when they carry auth (6.0: 'The "apiinfo.version" method must be
# called without the "auth" parameter.').
ANONYMOUS_METHODS = frozenset({"apiinfo.version", "user.login", "user.checkAuthentication"})

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")


class ZabbixVersion(NamedTuple):
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> ZabbixVersion:
    """``"6.0.14"`` → (6, 0, 14); ``"7.0.0alpha1"`` → (7, 0, 0)."""
    match = _VERSION.match(text)
    if not match:
        raise ValueError(f"not a Zabbix version: {text!r}")
    return ZabbixVersion(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


V5_4 = ZabbixVersion(5, 4)
V6_0 = ZabbixVersion(6, 0)
V6_4 = ZabbixVersion(6, 4)
V7_0 = ZabbixVersion(7, 0)
V7_2 = ZabbixVersion(7, 2)
MIN_SUPPORTED = V6_0


class UnsupportedSetup(ValueError):
    """This Zabbix version and this configuration cannot work together."""


class AuthPlacement(StrEnum):
    BODY = "body"  # the JSON-RPC request's "auth" member
    HEADER = "header"  # Authorization: Bearer <session id or token>


def check_supported(version: ZabbixVersion) -> None:
    if version < MIN_SUPPORTED:
        raise UnsupportedSetup(
            f"Zabbix {version} is too old: Yobidashi supports the API of 6.0 and later"
        )


def login_params(version: ZabbixVersion, username: str, password: str) -> dict[str, str]:
    """``user.login`` parameters. Only ``username``: ``user`` is gone from 6.4 on."""
    check_supported(version)
    return {"username": username, "password": password}


def auth_placement(version: ZabbixVersion, *, http_basic_auth: bool) -> AuthPlacement:
    """Where the session ID or API token goes for authenticated methods."""
    check_supported(version)
    if version < V6_4:
        return AuthPlacement.BODY  # 6.0/6.2 ignore the Authorization header
    if not http_basic_auth:
        return AuthPlacement.HEADER
    if version >= V7_2:
        raise UnsupportedSetup(basic_auth_unsupported(f"Zabbix {version}"))
    return AuthPlacement.BODY  # 6.4-7.0 still accept it, and the header is taken


def basic_auth_unsupported(zabbix: str) -> str:
    """Why HTTP basic auth in front of Zabbix 7.2+ cannot work, and what to do instead."""
    return (
        f"{zabbix} accepts API auth only in the Authorization header, which ZABBIX_HTTP_USER "
        "(HTTP basic auth in front of the frontend) already uses: exempt api_jsonrpc.php from "
        "basic auth, or protect it another way (mTLS, allow-list)"
    )


def acknowledges_option(version: ZabbixVersion) -> str:
    """The event.get option that returns an event's acknowledges (problem updates)."""
    return "select_acknowledges" if version < V7_0 else "selectAcknowledges"


OTHER_ACKNOWLEDGES_OPTION = {
    "select_acknowledges": "selectAcknowledges",
    "selectAcknowledges": "select_acknowledges",
}

# event.acknowledge action bits (6.0; 6.4 adds 32/64 suppress, 128/256 cause/symptom).
ACTION_CLOSE = 1
ACTION_ACKNOWLEDGE = 2
ACTION_MESSAGE = 4
