"""The dialer's configuration: one class, read from the environment."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from yobidashi_common.settings import Seconds, ServiceSettings, TimeZoneName
from yobidashi_dialer.accounts import (
    NAME_PATTERN,
    AccountConfig,
    FallbackAccountSettings,
    collect_fallbacks,
    e164_numbers,
    fallbacks_from_environment,
    split_numbers,
)
from yobidashi_dialer.voice.phrases import Keys


class DialerSettings(ServiceSettings):
    port: int = Field(8001, ge=1, le=65535, description="HTTP port (Twilio callbacks).")
    public_base_url: str = Field(
        description="The URL Twilio reaches this service at (https://…, no trailing slash). "
        "Callback URLs are built from it and every X-Twilio-Signature is checked against it.",
        pattern=r"^https?://[^\s?#]+$",
    )
    twilio_account_name: str = Field(
        "primary",
        pattern=NAME_PATTERN,
        description="The primary account's name in metrics and logs (never its SID). "
        "Fallback accounts: TWILIO_FALLBACK_<N>_* below.",
    )
    twilio_account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$", description="AC…")
    twilio_auth_token: SecretStr = Field(
        min_length=8, description="Signs API requests and Twilio's callbacks."
    )
    twilio_api_base_url: str | None = Field(
        None,
        description="Override Twilio's API host, e.g. http://127.0.0.1:8089 for the simulator.",
    )
    twilio_edge: str | None = Field(
        None,
        pattern=r"^[a-z0-9-]+$",
        description="Twilio edge location for REST requests (e.g. tokyo). Calls from a "
        "Japanese caller ID must go through tokyo, or the caller ID may be stripped.",
    )
    twilio_region: str | None = Field(
        None,
        pattern=r"^[a-z0-9-]+$",
        description="Twilio region (e.g. jp1); with an edge and no region the library uses us1.",
    )
    twilio_from_numbers: Annotated[list[str], NoDecode] = Field(
        description="Comma-separated caller IDs (E.164). Each recipient always gets the same one.",
        min_length=1,
    )
    twilio_cps: int = Field(1, ge=1, le=1000, description="Calls per second, account-wide.")
    twilio_max_concurrent_calls: int = Field(
        2, ge=0, description="Live calls at once, account-wide (0: no cap)."
    )
    twilio_ring_timeout: int = Field(30, ge=5, le=600, description="Seconds a call rings.")
    twilio_time_limit: int = Field(600, ge=30, le=14400, description="Longest call, seconds.")
    twilio_machine_detection: Literal["Enable", "DetectMessageEnd"] = Field(
        "DetectMessageEnd",
        description="Answering-machine detection (asynchronous); DetectMessageEnd waits for "
        "the beep so the voicemail is recorded whole.",
    )
    twilio_voice_ja: str = Field("Polly.Mizuki", description="<Say> voice for Japanese.")
    twilio_voice_en: str = Field("Polly.Joanna", description="<Say> voice for English.")
    twilio_request_timeout: Seconds = Field(10.0, description="Per Twilio REST request.")

    twilio_breaker_failures: int = Field(
        3,
        ge=1,
        le=100,
        description="Failed creates (5xx, timeout, auth) within TWILIO_BREAKER_WINDOW that open "
        "an account's circuit breaker; new calls then go to the next account.",
    )
    twilio_breaker_window: Seconds = Field(60.0, description="See TWILIO_BREAKER_FAILURES.")
    twilio_breaker_cooldown: Seconds = Field(
        30.0,
        description="How long an open account rests before one real call probes it again.",
    )
    # Filled from the indexed TWILIO_FALLBACK_<n>_* variables, not from a variable of its own.
    twilio_fallbacks: list[FallbackAccountSettings] = Field(default_factory=list, exclude=True)

    dial_default_region: str = Field(
        "JP", min_length=2, max_length=2, description="Region for numbers without +country."
    )
    dial_default_language: Literal["ja", "en"] = Field(
        "ja", description="Language for callees the on-call config does not know."
    )
    dial_default_timezone: TimeZoneName = Field(
        "Asia/Tokyo", description="Timezone for callees the on-call config does not know."
    )
    dial_max_attempts: int = Field(3, ge=1, le=10, description="Per person and step.")
    dial_retry_pause: Seconds = Field(60.0, description="Before redialling no-answer or busy.")
    dial_gather_timeout: int = Field(6, ge=1, le=30, description="Seconds to wait for a key.")
    dial_menu_repeats: int = Field(2, ge=0, le=5, description="Menu repeats without input.")
    dial_recovery_after: Seconds = Field(
        30.0, description="A call left 'placing' by a crash is looked up at Twilio after this."
    )
    dial_watchdog_grace: Seconds = Field(
        60.0, description="After the ring timeout, ask Twilio about a call with no final status."
    )
    dial_workers: int = Field(16, ge=1, le=256, description="Calls this replica works on at once.")
    dial_bundle_window: Seconds = Field(
        30.0,
        description="Problems for one person within this window become one call (the first "
        "one is never delayed). 0 turns bundling off. Routes can set their own.",
    )
    dial_max_calls_per_hour: int = Field(
        20,
        ge=0,
        description="Calls to one person per hour at most, so carriers do not flag the caller "
        "ID as spam; later problems wait and are bundled. 0: no cap.",
    )

    dial_callback: Literal["off", "on", "pin"] = Field(
        "off",
        description="Calls into our Twilio number (its Voice URL: PUBLIC_BASE_URL/twilio/voice/"
        "incoming) from a number we paged hear that person's open problems and can acknowledge "
        "them. Caller ID can be forged: off by default; pin asks for the contact's PIN first.",
    )
    dial_callback_window: Seconds = Field(
        3600.0, description="A caller hears the problems we paged them for within this time."
    )

    yobidashi_config: str | None = Field(
        None,
        description="The on-call YAML (contacts, schedules, policies, routes). Without it, "
        "every alert is Zabbix-driven: the number in {ALERT.SENDTO} is rung.",
    )
    config_reload_interval: Seconds = Field(
        5.0,
        description="How often to look for changes to YOBIDASHI_CONFIG (it also reloads on "
        "SIGHUP). 0: only on SIGHUP.",
    )
    yobidashi_admin_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token for changes through the dialer's /v1/ API (overrides). "
        "Unset: such changes are refused (503); reads stay open.",
    )

    key_acknowledge: str = Field("1", description="Key that acknowledges.")
    key_pass: str = Field("2", description="Key that passes to the next person.")
    key_repeat: str = Field("*", description="Key that repeats the message.")
    key_close: str = Field("", description="Optional key that acknowledges and closes.")
    key_comment: str = Field("", description="Optional key that only adds a message.")

    @model_validator(mode="before")
    @classmethod
    def _fallbacks(cls, data: object) -> object:
        if isinstance(data, dict) and "twilio_fallbacks" not in data:
            given = collect_fallbacks(data)
            data = {**data, "twilio_fallbacks": given or fallbacks_from_environment()}
        return data

    @model_validator(mode="after")
    def _distinct_accounts(self) -> DialerSettings:
        names = [a.name for a in self.accounts()]
        if len(set(names)) != len(names):
            raise ValueError(f"telephony account names must differ: {names}")
        return self

    @property
    def live_call_ttl(self) -> int:
        """How long a placed call may hold its live-call slot: the longest it can ring and talk,
        plus a minute for its final status to arrive."""
        return self.twilio_ring_timeout + self.twilio_time_limit + 60

    def accounts(self) -> list[AccountConfig]:
        """The primary, then each fallback in the order they are tried."""
        primary = AccountConfig(
            name=self.twilio_account_name,
            account_sid=self.twilio_account_sid,
            auth_token=self.twilio_auth_token.get_secret_value(),
            from_numbers=tuple(self.twilio_from_numbers),
            edge=self.twilio_edge,
            region=self.twilio_region,
            cps=self.twilio_cps,
            max_concurrent_calls=self.twilio_max_concurrent_calls,
            api_base_url=self.twilio_api_base_url,
        )
        return [
            primary,
            *(
                AccountConfig(
                    name=f.name,
                    account_sid=f.account_sid,
                    auth_token=f.auth_token.get_secret_value(),
                    from_numbers=tuple(f.from_numbers),
                    edge=f.edge,
                    region=f.region,
                    cps=f.cps,
                    max_concurrent_calls=f.max_concurrent_calls,
                    api_base_url=f.api_base_url,
                )
                for f in self.twilio_fallbacks
            ),
        ]

    # The primary's caller IDs are read as a fallback account's are.
    _split = field_validator("twilio_from_numbers", mode="before")(split_numbers)
    _e164 = field_validator("twilio_from_numbers")(e164_numbers)

    @field_validator("public_base_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.rstrip("/")

    def keys(self) -> Keys:
        return Keys(
            acknowledge=self.key_acknowledge,
            forward=self.key_pass,
            repeat=self.key_repeat,
            close=self.key_close,
            comment=self.key_comment,
        )

    def caller_id_for(self, recipient: str) -> str:
        """Sticky: the same recipient always sees the same number (whitelisted past DND)."""
        digest = int(hashlib.sha256(recipient.encode()).hexdigest(), 16)
        return self.twilio_from_numbers[digest % len(self.twilio_from_numbers)]
