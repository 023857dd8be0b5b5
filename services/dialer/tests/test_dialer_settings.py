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
