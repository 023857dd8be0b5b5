"""The dialer's settings refuse what would only fail later, naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from yobidashi_dialer.settings import DialerSettings

REQUIRED = {
    "public_base_url": "https://oncall.example.com",
    "twilio_account_sid": "AC" + "0" * 32,
    "twilio_auth_token": "t" * 32,
    "twilio_from_numbers": "+815012345678",
}


def test_an_unknown_default_timezone_is_refused_at_start() -> None:
    with pytest.raises(ValidationError) as caught:
        DialerSettings.model_validate({**REQUIRED, "dial_default_timezone": "Asia/Tokio"})
    [error] = caught.value.errors()
    assert error["loc"] == ("dial_default_timezone",)
    assert "unknown timezone 'Asia/Tokio'" in error["msg"]


def test_the_usual_settings_load() -> None:
    settings = DialerSettings.model_validate({**REQUIRED, "dial_default_timezone": "Asia/Tokyo"})
    assert settings.twilio_from_numbers == ["+815012345678"]


FALLBACK = {
    "TWILIO_FALLBACK_1_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_FALLBACK_1_AUTH_TOKEN": "f" * 32,
    "TWILIO_FALLBACK_1_FROM_NUMBERS": "+815098765432, +815098765433",
    "TWILIO_FALLBACK_1_EDGE": "tokyo",
    "TWILIO_FALLBACK_1_CPS": "3",
}


def test_fallback_accounts_come_in_index_order_after_the_primary() -> None:
    second = {k.replace("_1_", "_2_"): v for k, v in FALLBACK.items()}
    settings = DialerSettings.model_validate(
        {
            **REQUIRED,
            **second,
            **FALLBACK,
            "TWILIO_FALLBACK_2_NAME": "osaka",
            "twilio_edge": "tokyo",
        }
    )
    accounts = settings.accounts()
    assert [a.name for a in accounts] == ["primary", "fallback-1", "osaka"]
    assert accounts[0].edge == "tokyo"
    assert accounts[1].from_numbers == ("+815098765432", "+815098765433")
    assert accounts[1].cps == 3
    assert accounts[1].auth_token == "f" * 32
    assert "f" * 32 not in repr(settings)  # tokens stay secret in reprs and logs


def test_a_bad_fallback_variable_is_named_and_its_value_not_echoed() -> None:
    bad = {**FALLBACK, "TWILIO_FALLBACK_1_ACCOUNT_SID": "not-a-sid", "TWILIO_FALLBACK_1_CPS": "0"}
    with pytest.raises(ValidationError) as caught:
        DialerSettings.model_validate({**REQUIRED, **bad})
    [error] = caught.value.errors()
    assert "TWILIO_FALLBACK_1_ACCOUNT_SID" in error["msg"]
    assert "TWILIO_FALLBACK_1_CPS" in error["msg"]
    assert "f" * 32 not in error["msg"]


def test_two_accounts_with_one_name_are_refused() -> None:
    with pytest.raises(ValidationError, match="names must differ"):
        DialerSettings.model_validate({**REQUIRED, **FALLBACK, "TWILIO_FALLBACK_1_NAME": "primary"})
