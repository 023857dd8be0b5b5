"""How to reach and authenticate to one Zabbix frontend (built from `AckerSettings`)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class ZabbixConnection:
    url: str  # frontend base URL; "/api_jsonrpc.php" is appended unless present
    username: str
    api_token: str | None = None
    password: str | None = None
    http_user: str | None = None  # HTTP basic auth of a proxy in front of the frontend
    http_password: str | None = None
    verify: bool | str = True  # verify TLS; a path is the CA bundle to verify against
    timeout: float = 10.0
    max_connections: int = 4  # requests in flight to this Zabbix at once

    def __post_init__(self) -> None:
        if not self.api_token and not self.password:
            raise ValueError("an API token or a password is required")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")

    @property
    def auth_mode(self) -> str:
        return "token" if self.api_token else "password"

    @property
    def api_url(self) -> str:
        if self.url.endswith("/api_jsonrpc.php"):
            return self.url
        return self.url.rstrip("/") + "/api_jsonrpc.php"

    def tls(self) -> ssl.SSLContext | bool:
        """What httpx verifies the frontend's certificate with.

        A CA bundle becomes an explicit context, so that nothing in the environment
        (``SSL_CERT_FILE``, ``SSL_CERT_DIR``) can replace it. Without one, httpx's default
        applies: those variables when set (the usual way to add a site-wide CA), else certifi.
        """
        if self.verify is False:
            return False
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return True
