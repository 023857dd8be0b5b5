"""Settings shared by every service. Each service subclasses `ServiceSettings` once.

Everything comes from environment variables (12-factor); the README's table lists them all.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Literal, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> object:
    """Accept ``30``, ``"30"``, ``"90s"``, ``"5m"``, ``"2h"`` or ``"7d"``; return seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h, 7d)")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name like Asia/Tokyo)") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_time_zone)]


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# One environment variable, "a, b, c": a list (NoDecode: not parsed as JSON first).
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)]


class NatsSettings(BaseSettings):
    """How to reach the bus, and how the streams are sized. Production NATS is never open."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    nats_url: str = Field("nats://127.0.0.1:4222", description="Comma-separated server URLs.")
    nats_token: SecretStr | None = Field(None, description="Token authentication.")
    nats_user: str | None = Field(None, description="User, with NATS_PASSWORD.")
    nats_password: SecretStr | None = Field(None, description="Password for NATS_USER.")
    nats_creds: str | None = Field(None, description="Path to a .creds file (JWT + nkey).")
    nats_tls_ca: str | None = Field(None, description="CA bundle that signs the server cert.")
    nats_tls_cert: str | None = Field(None, description="Client certificate, for mutual TLS.")
    nats_tls_key: str | None = Field(None, description="Key of NATS_TLS_CERT.")
    nats_stream_replicas: int = Field(
        1, ge=1, le=5, description="Replicas of every stream and bucket (3 on a cluster)."
    )
    nats_duplicate_window: Seconds = Field(
        3600.0, description="How long a Nats-Msg-Id is remembered for de-duplication."
    )
    nats_alerts_max_age: Seconds = Field(
        7 * 86400.0, description="How long alerts stay in YOBIDASHI_ALERTS (e.g. 7d)."
    )
    nats_events_max_age: Seconds = Field(
        7 * 86400.0, description="How long call, key and ack events are kept."
    )
    nats_publish_timeout: Seconds = Field(
        2.0, description="How long to wait for JetStream's ack before answering 503."
    )
    nats_ping_interval: Seconds = Field(
        2.0,
        gt=0,
        description="How often the client pings its server. With NATS_MAX_OUTSTANDING_PINGS it "
        "decides how soon a hung server is left: after interval × (max + 1) s at most.",
    )
    nats_max_outstanding_pings: int = Field(
        2,
        ge=1,
        description="Pings left unanswered before the connection counts as stale and the "
        "client reconnects to another server.",
    )
    nats_connect_timeout: Seconds = Field(
        2.0,
        gt=0,
        description="How long one connection attempt may take, TLS and the server's greeting "
        "included (a hung server accepts TCP and never greets).",
    )
    nats_ack_wait: Seconds = Field(
        30.0,
        gt=0,
        description="How long a consumer may hold a message without news before it is "
        "redelivered (a crashed worker's messages come back after this).",
    )

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.nats_url.split(",") if s.strip()]


class ServiceSettings(NatsSettings):
    """Base for each service's one settings class."""

    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = Field(
        "json", description="json for machines, console for people."
    )
    shutdown_grace: Seconds = Field(
        10.0, description="How long SIGTERM waits for in-flight work before closing."
    )


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings from the environment, or exit with a message a human can act on."""
    try:
        return cls()
    except ValidationError as exc:
        _exit_with_config_errors(exc)


def _exit_with_config_errors(exc: ValidationError) -> NoReturn:
    lines = ["configuration error:"]
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]).upper() or "(settings)"
        lines.append(f"  {name}: {err['msg']}")
    print("\n".join(lines), file=sys.stderr)  # noqa: T201 - logging is not configured yet
    raise SystemExit(2)


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
