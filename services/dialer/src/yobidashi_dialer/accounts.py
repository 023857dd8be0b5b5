"""Telephony accounts: the primary (the plain ``TWILIO_*`` variables) and its fallbacks.

Fallbacks are indexed environment variables, ``TWILIO_FALLBACK_<n>_ACCOUNT_SID`` and so on,
n = 1, 2, … in the order they are tried. Not a YAML file: every other setting, and the
primary's token, already come from the environment (a Kubernetes Secret, Compose's .env), so a
second account is five more variables from the same secret store, with nothing to mount and
keep in sync, and a deployment with one account does not change at all.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from yobidashi_common.phone import InvalidPhoneNumber, normalize

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,30}$"
_INDEXED = re.compile(r"^twilio_fallback_(\d{1,2})_(.+)$", re.IGNORECASE)


def split_numbers(value: object) -> object:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def e164_numbers(numbers: list[str]) -> list[str]:
    out: list[str] = []
    for number in numbers:
        try:
            out.append(normalize(number, "US"))
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from None
    return out


class FallbackAccountSettings(BaseSettings):
    """One fallback account, read from ``TWILIO_FALLBACK_<n>_*`` (n = 1, 2, …)."""

    model_config = SettingsConfigDict(
        env_prefix="TWILIO_FALLBACK_<N>_", extra="forbid", env_file=None
    )

    name: str = Field(
        "",
        pattern=r"^$|" + NAME_PATTERN,
        description="The account's name in metrics, logs and callback URLs "
        "(default fallback-<n>). Never its SID.",
    )
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$", description="AC… of this account.")
    auth_token: SecretStr = Field(
        min_length=8, description="This account's token: signs its requests and its callbacks."
    )
    from_numbers: Annotated[list[str], NoDecode] = Field(
        min_length=1, description="Comma-separated caller IDs (E.164) owned by this account."
    )
    edge: str | None = Field(None, pattern=r"^[a-z0-9-]+$", description="Its Twilio edge.")
    region: str | None = Field(None, pattern=r"^[a-z0-9-]+$", description="Its Twilio region.")
    cps: int = Field(1, ge=1, le=1000, description="Its calls per second, account-wide.")
    max_concurrent_calls: int = Field(2, ge=0, description="Its live calls at once (0: no cap).")
    api_base_url: str | None = Field(
        None, description="Override its API host (a second simulator in tests)."
    )

    _split = field_validator("from_numbers", mode="before")(split_numbers)
    _e164 = field_validator("from_numbers")(e164_numbers)


def collect_fallbacks(*sources: Mapping[str, Any]) -> list[FallbackAccountSettings]:
    """The ``TWILIO_FALLBACK_<n>_*`` values found in ``sources`` (earlier ones win), by n."""
    by_index: dict[int, dict[str, Any]] = {}
    for source in reversed(sources):
        for key, value in source.items():
            match = _INDEXED.match(key)
            if match:
                by_index.setdefault(int(match[1]), {})[match[2].lower()] = value
    accounts: list[FallbackAccountSettings] = []
    for index in sorted(by_index):
        fields = by_index[index]
        if not fields.get("name"):
            fields["name"] = f"fallback-{index}"
        try:
            accounts.append(FallbackAccountSettings.model_validate(fields))
        except ValidationError as exc:
            # Name each variable, as every other setting's error does, and never echo a value
            # (one of them is a token).
            problems = "; ".join(
                f"TWILIO_FALLBACK_{index}_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(problems) from None
    return accounts


def fallbacks_from_environment() -> list[FallbackAccountSettings]:
    return collect_fallbacks(os.environ)


@dataclass(frozen=True)
class AccountConfig:
    """One telephony account, primary or fallback, in the order they are tried."""

    name: str
    account_sid: str
    auth_token: str
    from_numbers: tuple[str, ...]
    edge: str | None
    region: str | None
    cps: int
    max_concurrent_calls: int
    api_base_url: str | None

    def caller_id_for(self, recipient: str) -> str:
        """Sticky per account: the same recipient always sees the same number of it."""
        digest = int(hashlib.sha256(recipient.encode()).hexdigest(), 16)
        return self.from_numbers[digest % len(self.from_numbers)]
