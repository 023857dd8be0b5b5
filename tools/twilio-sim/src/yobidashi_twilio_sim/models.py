"""Pydantic models for everything the admin API accepts: scenarios, faults, settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AnswerKind = Literal["human", "no-answer", "busy", "failed", "machine"]
DTMF_PATTERN = r"^[0-9*#]+$"


class DigitPress(BaseModel):
    """Keys the callee presses during one <Gather>, `after` simulated seconds after it starts."""

    model_config = ConfigDict(extra="forbid")

    after: float = Field(0.0, ge=0)
    keys: str = Field(pattern=DTMF_PATTERN)


class Scenario(BaseModel):
    """How the phone at one number behaves for one call.

    `answer_after` is the ring time before the outcome (answer, busy or failed); a human or
    machine that would answer after the call's `Timeout` never does (no-answer). Each entry of
    `digits` is used by one <Gather>, in order.
    """

    model_config = ConfigDict(extra="forbid")

    answer: AnswerKind = "human"
    answer_after: float = Field(1.0, ge=0)
    digits: list[DigitPress] = Field(default_factory=list)
    hangup_after: float | None = Field(
        None, ge=0, description="The callee hangs up this many seconds after answering."
    )
    amd_after: float | None = Field(
        None, ge=0, description="Answering machine detection time; default from settings."
    )
    sip_response_code: int | None = Field(None, ge=100, le=699)


class Faults(BaseModel):
    """REST fault injection, so a client's retry and backoff can be exercised."""

    model_config = ConfigDict(extra="forbid")

    rate_429: float = Field(0.0, ge=0, le=1, description="Share of creates answered 429/20429.")
    rate_500: float = Field(0.0, ge=0, le=1, description="Share of creates answered 500/20500.")
    latency_ms: int = Field(0, ge=0, description="Added to every REST request.")
    create_answer_delay_ms: int = Field(
        0,
        ge=0,
        description="Creates are carried out at once and answered this much later: a client "
        "that stops waiting sooner does not know its call exists.",
    )
    unavailable: bool = Field(False, description="Every REST request gets 503.")
    next_create_statuses: list[Literal[429, 500, 503]] = Field(
        default_factory=list,
        description="Deterministic: the next creates get these statuses, in order.",
    )
    seed: int | None = Field(None, description="Seed for the random draws.")
    refuse_creates: Literal[10001, 20003, 20005, 21210, 21215, 21216] | None = Field(
        None,
        description="Every create is refused with this Twilio error, as an account that "
        "cannot call answers: 10001/20005 account not active (suspended), 20003 bad "
        "credentials (401), 21210 caller ID not verified, 21215/21216 geo permissions.",
    )

    @model_validator(mode="after")
    def _rates_fit(self) -> Faults:
        if self.rate_429 + self.rate_500 > 1:
            raise ValueError("rate_429 + rate_500 must not exceed 1")
        return self


class SettingsPatch(BaseModel):
    """Runtime-adjustable settings; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    cps: int | None = Field(None, ge=1)
    max_concurrent_calls: int | None = Field(None, ge=0)
    time_scale: float | None = Field(None, gt=0)
    say_seconds_per_char: float | None = Field(None, ge=0)
    amd_detection_seconds: float | None = Field(None, ge=0)
    dialling_held: bool | None = Field(
        None,
        description="True: creates are still accepted, but no call leaves the queue (the "
        "carrier side is down); they stay `queued` until it is False again.",
    )


class RuntimeSettings(BaseModel):
    """The live values of the adjustable settings."""

    cps: int
    max_concurrent_calls: int
    time_scale: float
    say_seconds_per_char: float
    amd_detection_seconds: float
    dialling_held: bool = False


class InboundRequest(BaseModel):
    """``POST /sim/inbound``: a phone calls one of our numbers."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", pattern=r"^\+[1-9][0-9]{6,14}$", description="The caller.")
    to: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="Our number.")
    url: str = Field(pattern=r"^https?://", description="That number's Voice URL.")
    method: str = Field("POST", pattern="^(GET|POST)$")


class DigitsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digits: str = Field(pattern=DTMF_PATTERN)
