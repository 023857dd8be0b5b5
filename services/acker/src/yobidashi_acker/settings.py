"""Acker's configuration: one class, read from the environment.

Zabbix authentication: an API token (``ZABBIX_API_TOKEN``, preferred: no login, no session to
expire, revocable on its own) or ``ZABBIX_USER`` + ``ZABBIX_PASSWORD`` (logs in, and logs in
again when the session expires). Use a dedicated Zabbix user (``yobidashi-acker`` by default):
Zabbix never notifies the user who made an update, so acking as a human's account would hide
the update notification from that human.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from yobidashi_acker.zabbix import ZabbixConnection
from yobidashi_common.bus import backoff_delay
from yobidashi_common.events import OWN_ACK_MARKER
from yobidashi_common.settings import (
    Seconds,
    ServiceSettings,
    TimeZoneName,
    parse_duration,
    secret_value,
)

DEFAULT_MESSAGE_TEMPLATE = (
    "{verb} by phone by {who} ({number}) at {time} via Yobidashi [call {call_sid}/ref {ref}]{note}"
)
TEMPLATE_FIELDS = frozenset(
    {"verb", "who", "number", "time", "call_sid", "ref", "note", "digit", "keypress_id"}
)


class AckerSettings(ServiceSettings):
    port: int = Field(8002, ge=1, le=65535, description="HTTP port for /healthz, /readyz...")

    # -- Zabbix ----------------------------------------------------------------------------------
    zabbix_url: str = Field(
        description="Zabbix frontend base URL, e.g. https://zabbix.example.com/zabbix; "
        "/api_jsonrpc.php is appended. Required."
    )
    zabbix_api_token: SecretStr | None = Field(
        None, description="API token of the acker's Zabbix user (preferred over a password)."
    )
    zabbix_user: str = Field(
        "yobidashi-acker",
        min_length=1,
        description="The acker's Zabbix username: the login name with ZABBIX_PASSWORD, and "
        "the name acks appear under (reported as AckResult.zabbix_user) with a token.",
    )
    zabbix_password: SecretStr | None = Field(
        None, description="Password of ZABBIX_USER, when no API token is set."
    )
    zabbix_http_user: str | None = Field(
        None, description="HTTP basic auth user of a proxy in front of the frontend."
    )
    zabbix_http_password: SecretStr | None = Field(
        None, description="HTTP basic auth password for ZABBIX_HTTP_USER."
    )
    zabbix_tls_verify: bool = Field(
        True, description="Verify the frontend's TLS certificate. Leave on in production."
    )
    zabbix_ca_bundle: str | None = Field(
        None, description="CA bundle (PEM file) that signs the frontend's certificate."
    )
    zabbix_timeout: Seconds = Field(
        10.0, gt=0, description="Connect and read timeout of one Zabbix API request."
    )
    zabbix_probe_interval: Seconds = Field(
        60.0,
        description="How often to check that Zabbix answers and accepts our credentials "
        "(version, login, one cheap call), for /status, metrics and readiness. Always once at "
        "start; 0: only then.",
    )

    # -- acknowledging ----------------------------------------------------------------------------
    acker_message_template: str = Field(
        DEFAULT_MESSAGE_TEMPLATE,
        min_length=1,
        max_length=1500,
        description="Text of the Zabbix update message. Fields: {verb} {who} {number} {time} "
        "{call_sid} {ref} {note} {digit} {keypress_id}. Must keep 'via Yobidashi' (people see "
        "the ack came by phone; ingest knows our own acks by it where Zabbix hides the "
        "updater) and {ref} (the acker finds its own writes by it).",
    )
    acker_default_timezone: TimeZoneName = Field(
        "Asia/Tokyo",
        description="Timezone for the message time when a contact's timezone is unknown.",
    )
    acker_retry_backoff: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
        description="Delays before retrying a keypress while Zabbix is unreachable, by "
        "delivery (comma-separated durations); the last one repeats.",
    )
    acker_max_deliveries: int = Field(
        100_000,
        ge=1,
        description="Deliveries before a keypress is dead-lettered. Transient Zabbix failures "
        "retry until this, so keep max_deliveries × the last backoff longer than the keys "
        "stream's NATS_EVENTS_MAX_AGE: an outage then never dead-letters an ack.",
    )
    acker_error_max_deliveries: int = Field(
        10,
        ge=1,
        description="Unexpected errors (a bug, not a Zabbix outage) after which a keypress is "
        "dead-lettered, counted per acker process.",
    )
    acker_busy_retry: Seconds = Field(
        2.0,
        gt=0,
        description="Retry delay while another keypress is writing to the same problem.",
    )
    acker_claim_stale: Seconds = Field(
        120.0,
        description="A claim on a problem not refreshed for this long is taken over: its "
        "worker died mid-write (a crash after a transient failure releases the claim at "
        "once). Must cover a write queued behind the others: at least (ACKER_CONCURRENCY + "
        "1) x ZABBIX_TIMEOUT.",
    )
    acker_marker_ttl: Seconds = Field(
        30 * 86400.0,
        description="How long the per-problem markers in the yobidashi_acks bucket live. "
        "Keep above NATS_EVENTS_MAX_AGE (how long a keypress can be redelivered).",
    )
    acker_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Keypresses handled at once, and the most Zabbix API requests in flight.",
    )

    @field_validator(
        "zabbix_api_token",
        "zabbix_password",
        "zabbix_http_user",
        "zabbix_http_password",
        "zabbix_ca_bundle",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("zabbix_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL, e.g. https://zabbix.example.com/zabbix")
        if parts.username or parts.password:
            raise ValueError("must not contain credentials; use ZABBIX_HTTP_USER/PASSWORD")
        return value.strip()

    @field_validator("zabbix_ca_bundle")
    @classmethod
    def _ca_exists(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value or None

    @field_validator("acker_retry_backoff", mode="before")
    @classmethod
    def _split_durations(cls, value: object) -> object:
        if isinstance(value, str):
            return [parse_duration(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("acker_retry_backoff")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("needs at least one delay, all above 0")
        return value

    @field_validator("acker_message_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if OWN_ACK_MARKER not in value:
            raise ValueError(f"must contain {OWN_ACK_MARKER!r}")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        unknown = fields - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; use {sorted(TEMPLATE_FIELDS)}")
        if "ref" not in fields:
            raise ValueError("must contain {ref}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.zabbix_api_token is None and self.zabbix_password is None:
            raise ValueError("set ZABBIX_API_TOKEN (preferred) or ZABBIX_PASSWORD")
        if bool(self.zabbix_http_user) != bool(self.zabbix_http_password):
            raise ValueError("ZABBIX_HTTP_USER and ZABBIX_HTTP_PASSWORD go together")
        if self.acker_claim_stale < (self.acker_concurrency + 1) * self.zabbix_timeout:
            raise ValueError(
                "ACKER_CLAIM_STALE must be at least (ACKER_CONCURRENCY + 1) × ZABBIX_TIMEOUT"
            )
        return self

    @property
    def default_timezone(self) -> ZoneInfo:
        return ZoneInfo(self.acker_default_timezone)

    def zabbix_connection(self) -> ZabbixConnection:
        verify: bool | str = self.zabbix_ca_bundle or self.zabbix_tls_verify
        if not self.zabbix_tls_verify:
            verify = False
        return ZabbixConnection(
            url=self.zabbix_url,
            username=self.zabbix_user,
            api_token=secret_value(self.zabbix_api_token),
            password=secret_value(self.zabbix_password),
            http_user=self.zabbix_http_user,
            http_password=secret_value(self.zabbix_http_password),
            verify=verify,
            timeout=self.zabbix_timeout,
            max_connections=self.acker_concurrency,
        )

    def retry_delay(self, deliveries: int) -> float:
        """The backoff before delivery ``deliveries + 1``, as the bus computes it."""
        return backoff_delay(self.acker_retry_backoff, deliveries)
