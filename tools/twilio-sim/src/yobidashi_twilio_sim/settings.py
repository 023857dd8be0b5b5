"""Simulator settings, all from `TWILIO_SIM_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# A fixed, obviously fake test account so that clients and the sim agree out of the box.
DEFAULT_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
DEFAULT_AUTH_TOKEN = "twilio-sim-test-auth-token-00000"  # noqa: S105 - public test token


class SimSettings(BaseSettings):
    """Startup configuration. `cps`, `max_concurrent_calls`, `time_scale` and the speech/AMD
    timings can also be changed at runtime with `PUT /sim/settings`."""

    model_config = SettingsConfigDict(env_prefix="TWILIO_SIM_", extra="ignore", env_file=None)

    host: str = "127.0.0.1"
    port: int = Field(8089, ge=0, le=65535)
    account_sid: str = Field(DEFAULT_ACCOUNT_SID, pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: str = Field(DEFAULT_AUTH_TOKEN, min_length=1)
    cps: int = Field(1, ge=1, description="Account-wide calls per second (dials, not creates).")
    max_concurrent_calls: int = Field(0, ge=0, description="0 means unlimited.")
    time_scale: float = Field(
        1.0, gt=0, description="Real seconds per simulated second (0.01 turns 60 s into 0.6 s)."
    )
    scenarios: str | None = Field(
        None, description="Per-number scenarios: inline JSON object or a path to a JSON file."
    )
    default_scenario: str | None = Field(
        None, description="Scenario for numbers without one: inline JSON or a path."
    )
    say_seconds_per_char: float = Field(
        0.0, ge=0, description="Simulated speaking time of <Say>, per character."
    )
    amd_detection_seconds: float = Field(
        2.0, ge=0, description="Simulated answering-machine-detection time."
    )
    webhook_timeout: float = Field(15.0, gt=0, description="Real seconds per webhook request.")
    log_level: str = "info"
