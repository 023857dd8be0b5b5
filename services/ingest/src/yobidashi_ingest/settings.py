"""Ingest's configuration: one class, read from the environment."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr

from yobidashi_common.settings import CommaSeparated, Seconds, ServiceSettings, TimeZoneName


class IngestSettings(ServiceSettings):
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    ingest_token: SecretStr = Field(
        description="Bearer token the Zabbix media type must send. Required.", min_length=16
    )
    ingest_max_body_bytes: int = Field(
        256 * 1024, ge=1024, description="Larger webhook bodies get 413."
    )
    ingest_retry_after: Seconds = Field(
        10.0, description="Retry-After on 503, so Zabbix's media-type retries come back later."
    )
    zabbix_timezone: TimeZoneName = Field(
        "UTC", description="Timezone of {EVENT.DATE}/{EVENT.TIME} (the media user's timezone)."
    )
    zabbix_url: str | None = Field(None, description="Zabbix frontend URL, for links back.")
    zabbix_own_users: CommaSeparated = Field(
        default_factory=lambda: ["yobidashi-acker"],
        description="Zabbix usernames whose updates are Yobidashi's own acks coming back.",
    )

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.zabbix_timezone)
