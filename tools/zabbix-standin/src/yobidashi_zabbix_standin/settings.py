"""The stand-in's settings, all from ``ZABBIX_STANDIN_*`` environment variables."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from yobidashi_zabbix_standin.api import USER, ZabbixStandIn
from yobidashi_zabbix_standin.versions import parse


class StandInSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZABBIX_STANDIN_", extra="ignore", env_file=None)

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    version: str = Field(
        "6.0.14",
        description="The Zabbix version it answers as, with that version's API rules "
        "(6.0, 6.4, 7.0, 7.2, 7.4, 8.0).",
    )
    api_token: SecretStr | None = Field(
        None, description="The API token it accepts: the acker's ZABBIX_API_TOKEN."
    )
    username: str = Field(
        USER, min_length=1, description="The user of that token, and the login name."
    )
    password: SecretStr | None = Field(
        None, description="Password of ZABBIX_STANDIN_USERNAME for user.login."
    )
    http_user: str | None = Field(
        None, description="HTTP basic auth it demands, like a proxy in front of a frontend."
    )
    http_password: SecretStr | None = Field(
        None, description="HTTP basic auth password for ZABBIX_STANDIN_HTTP_USER."
    )
    delay: float = Field(0.0, ge=0, description="Seconds before every answer (latency).")
    log_level: str = "warning"

    @field_validator("version")
    @classmethod
    def _known(cls, value: str) -> str:
        if parse(value) < (6, 0):
            raise ValueError("the stand-in answers as Zabbix 6.0 or later")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.api_token is None and self.password is None:
            raise ValueError("set ZABBIX_STANDIN_API_TOKEN or ZABBIX_STANDIN_PASSWORD")
        if bool(self.http_user) != bool(self.http_password):
            raise ValueError("ZABBIX_STANDIN_HTTP_USER and _HTTP_PASSWORD go together")
        return self

    def standin(self) -> ZabbixStandIn:
        """A stand-in as configured, where every event id asked about is an open problem."""
        standin = ZabbixStandIn(
            self.version,
            tokens={self.api_token.get_secret_value(): self.username} if self.api_token else {},
            users={self.username: self.password.get_secret_value()} if self.password else {},
            auto_problems=True,
            basic_auth=(
                (self.http_user, self.http_password.get_secret_value())
                if self.http_user and self.http_password
                else None
            ),
        )
        standin.faults.delay = self.delay
        return standin
