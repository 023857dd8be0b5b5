"""The CLI's and the heartbeat's settings, from the environment like every service's.

Command-line flags override them; the README's tables are generated from these classes.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from yobidashi_common.settings import Seconds


class CliSettings(BaseSettings):
    """Where the `yobidashi` command finds the services."""

    model_config = SettingsConfigDict(extra="ignore", env_file=None)

    yobidashi_ingest_url: str = Field(
        "http://127.0.0.1:8000", description="Where the CLI and the heartbeat reach ingest."
    )
    yobidashi_dialer_url: str = Field(
        "http://127.0.0.1:8001", description="Where they reach the dialer's /v1/ API."
    )
    ingest_token: SecretStr | None = Field(
        None, description="Ingest's token, for send-test-alert and the heartbeat."
    )
    yobidashi_admin_token: SecretStr | None = Field(
        None, description="The dialer's admin token, for `yobidashi override add|remove`."
    )


class HeartbeatSettings(CliSettings):
    """`yobidashi heartbeat`: the canary."""

    heartbeat_number: str = Field(
        description="The canary number: a line that answers (a test number, or the simulator)."
    )
    ingest_token: SecretStr = Field(description="Ingest's token (the heartbeat needs it).")
    heartbeat_every: Seconds = Field(300.0, description="Time between rounds (e.g. 5m).")
    heartbeat_timeout: Seconds = Field(
        120.0, description="How long a round may take from the alert to the answered call."
    )
    heartbeat_host: str = Field("0.0.0.0", description="Address the metrics server listens on.")
    heartbeat_port: int = Field(
        9102,
        ge=0,
        le=65535,
        description="The heartbeat's metrics port (0: any free one). Not PORT, which is the "
        "services' HTTP port.",
    )
