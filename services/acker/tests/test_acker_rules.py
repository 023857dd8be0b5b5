"""Version rules, error classification and settings: pure, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from yobidashi_acker.settings import AckerSettings
from yobidashi_acker.zabbix.errors import (
    ErrorKind,
    classify_http_status,
    classify_rpc_error,
    rpc_error,
)
from yobidashi_acker.zabbix.rules import (
    AuthPlacement,
    UnsupportedSetup,
    ZabbixVersion,
    acknowledges_option,
    auth_placement,
    login_params,
    parse_version,
)

# -- versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("6.0.14", ZabbixVersion(6, 0, 14)),
        ("7.4.0", ZabbixVersion(7, 4, 0)),
        ("7.0.0alpha1", ZabbixVersion(7, 0, 0)),
        ("6.4", ZabbixVersion(6, 4, 0)),
    ],
)
def test_parse_version(text: str, version: ZabbixVersion) -> None:
    assert parse_version(text) == version


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a Zabbix version"):
        parse_version("<html>")


@pytest.mark.parametrize(
    ("version", "placement"),
    [
        ("6.0.14", AuthPlacement.BODY),
        ("6.2.9", AuthPlacement.BODY),
        ("6.4.0", AuthPlacement.HEADER),
        ("7.0.5", AuthPlacement.HEADER),
        ("7.2.0", AuthPlacement.HEADER),
        ("7.4.1", AuthPlacement.HEADER),
    ],
)
def test_auth_goes_in_the_body_before_6_4_and_in_the_header_from_6_4(
    version: str, placement: AuthPlacement
) -> None:
    assert auth_placement(parse_version(version), http_basic_auth=False) is placement


@pytest.mark.parametrize(
    ("version", "placement"),
    [("6.0.14", AuthPlacement.BODY), ("6.4.0", AuthPlacement.BODY), ("7.0.5", AuthPlacement.BODY)],
)
def test_behind_basic_auth_the_body_is_used_while_zabbix_still_accepts_it(
    version: str, placement: AuthPlacement
) -> None:
    assert auth_placement(parse_version(version), http_basic_auth=True) is placement


@pytest.mark.parametrize("version", ["7.2.0", "7.4.3"])
def test_basic_auth_in_front_of_7_2_plus_is_a_clear_configuration_error(version: str) -> None:
    with pytest.raises(UnsupportedSetup, match="only in the Authorization header"):
        auth_placement(parse_version(version), http_basic_auth=True)


@pytest.mark.parametrize("version", ["5.0.40", "5.4.0"])
def test_versions_before_6_0_are_refused(version: str) -> None:
    with pytest.raises(UnsupportedSetup, match="too old"):
        auth_placement(parse_version(version), http_basic_auth=False)
    with pytest.raises(UnsupportedSetup):
        login_params(parse_version(version), "u", "p")


@pytest.mark.parametrize("version", ["6.0.14", "6.4.0", "7.0.0", "7.2.0", "7.4.0"])
def test_login_always_uses_username_never_user(version: str) -> None:
    params = login_params(parse_version(version), "yobidashi-acker", "pw")
    assert params == {"username": "yobidashi-acker", "password": "pw"}


def test_acknowledges_option_by_version() -> None:
    assert acknowledges_option(ZabbixVersion(6, 0, 14)) == "select_acknowledges"
    assert acknowledges_option(ZabbixVersion(6, 4, 0)) == "select_acknowledges"
    assert acknowledges_option(ZabbixVersion(7, 0, 0)) == "selectAcknowledges"


# -- error classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "data", "kind"),
    [
        # Permanent: measured on 6.0.14.
        (-32500, "Application error.", "No permissions to referred object or it does not exist!", ErrorKind.NOT_FOUND),  # noqa: E501
        (-32602, "Invalid params.", 'Incorrect value for field "message": cannot be empty.', ErrorKind.INVALID),  # noqa: E501
        (-32602, "Invalid params.", 'Incorrect value for field "action": unexpected value "512".', ErrorKind.INVALID),  # noqa: E501
        (-32500, "Application error.", "Cannot close problem: trigger does not allow manual closing.", ErrorKind.CANNOT_CLOSE),  # noqa: E501
        (-32602, "Invalid params.", 'Incorrect value for field "action": no permissions to close problems.', ErrorKind.CANNOT_CLOSE),  # noqa: E501
        # Auth: transient but loud.
        (-32602, "Invalid params.", "Not authorized.", ErrorKind.AUTH),
        (-32602, "Invalid params.", "Session terminated, re-login, please.", ErrorKind.AUTH),
        (-32500, "Application error.", "API token expired.", ErrorKind.AUTH),
        (-32500, "Application error.", "Incorrect user name or password or account is temporarily blocked.", ErrorKind.AUTH),  # noqa: E501
        (-32500, "Application error.", "Login name or password is incorrect.", ErrorKind.AUTH),
        # Config: transient but loud.
        (-32600, "Invalid request.", 'Invalid parameter "/": unexpected parameter "auth".', ErrorKind.CONFIG),  # noqa: E501
        (-32602, "Invalid params.", 'The "apiinfo.version" method must be called without the "auth" parameter.', ErrorKind.CONFIG),  # noqa: E501
        (-32602, "Invalid params.", 'Invalid parameter "/": unexpected parameter "user".', ErrorKind.CONFIG),  # noqa: E501
        (-32500, "Application error.", 'No permissions to call "event.acknowledge".', ErrorKind.CONFIG),  # noqa: E501
        (-32602, "Invalid params.", 'Incorrect value for field "action": no permissions to acknowledge problems.', ErrorKind.CONFIG),  # noqa: E501
        (-32601, "Method not found.", "The requested remote-procedure does not exist", ErrorKind.CONFIG),  # noqa: E501
        # Server side: transient.
        (-32500, "Application error.", "Zabbix server is not running: the information displayed may not be current.", ErrorKind.SERVER),  # noqa: E501
        (1, "Error connecting to database: connection refused", "", ErrorKind.SERVER),
        (-32603, "Internal error.", "System error occurred. Please contact Zabbix administrator.", ErrorKind.SERVER),  # noqa: E501
        (-32500, "Application error.", "SQL statement execution has failed.", ErrorKind.SERVER),
        (-32500, "Application error.", "Something new and strange.", ErrorKind.SERVER),
    ],
)  # fmt: skip
def test_classify_rpc_error(code: int, message: str, data: str, kind: ErrorKind) -> None:
    assert classify_rpc_error(code, message, data) is kind


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ErrorKind.SERVER),
        (502, ErrorKind.SERVER),
        (503, ErrorKind.SERVER),
        (412, ErrorKind.SERVER),
        (429, ErrorKind.SERVER),
        (401, ErrorKind.AUTH),
        (403, ErrorKind.AUTH),
        (404, ErrorKind.CONFIG),
        (405, ErrorKind.CONFIG),
    ],
)
def test_classify_http_status(status: int, kind: ErrorKind) -> None:
    assert classify_http_status(status) is kind


def test_which_kinds_are_retried() -> None:
    transient = {k for k in ErrorKind if k.transient}
    assert transient == {
        ErrorKind.TRANSPORT,
        ErrorKind.TIMEOUT,
        ErrorKind.SERVER,
        ErrorKind.AUTH,
        ErrorKind.CONFIG,
    }
    assert {k for k in ErrorKind if k.loud} == {ErrorKind.AUTH, ErrorKind.CONFIG}


def test_rpc_error_carries_code_and_data_and_knows_a_dead_session() -> None:
    error = rpc_error(
        "event.get",
        {
            "code": -32602,
            "message": "Invalid params.",
            "data": "Session terminated, re-login, please.",
        },
    )
    assert error.kind is ErrorKind.AUTH
    assert error.code == -32602
    assert error.session_expired
    assert not error.auth_transport_rejected
    moved = rpc_error(
        "event.get",
        {"code": -32600, "message": "Invalid request.", "data": 'unexpected parameter "auth".'},
    )
    assert moved.auth_transport_rejected
    assert rpc_error("x", "garbage").kind is ErrorKind.SERVER


# -- settings ------------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "zabbix_url": "https://zabbix.example.com/zabbix",
    "zabbix_api_token": "t" * 64,
}


def settings(**overrides: Any) -> AckerSettings:
    return AckerSettings.model_validate({**BASE, **overrides})


def test_defaults() -> None:
    s = settings()
    assert s.port == 8002
    assert s.zabbix_user == "yobidashi-acker"
    assert s.zabbix_tls_verify is True
    assert s.acker_max_deliveries * s.acker_retry_backoff[-1] > s.nats_events_max_age
    connection = s.zabbix_connection()
    assert connection.api_url == "https://zabbix.example.com/zabbix/api_jsonrpc.php"
    assert connection.auth_mode == "token"
    assert connection.verify is True


def test_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "ZABBIX_URL": "https://zabbix.example.com/",
        "ZABBIX_USER": "acker",
        "ZABBIX_PASSWORD": "s3cret-password",
        "ZABBIX_API_TOKEN": "",
        "ZABBIX_HTTP_USER": "proxy",
        "ZABBIX_HTTP_PASSWORD": "proxy-pass",
        "ZABBIX_CA_BUNDLE": str(ca),
        "ZABBIX_TIMEOUT": "5s",
        "ACKER_RETRY_BACKOFF": "500ms, 2s, 1m",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = AckerSettings()
    assert s.zabbix_api_token is None
    assert s.acker_retry_backoff == [0.5, 2.0, 60.0]
    assert [s.retry_delay(n) for n in (1, 2, 3, 50)] == [0.5, 2.0, 60.0, 60.0]
    connection = s.zabbix_connection()
    assert connection.auth_mode == "password"
    assert connection.verify == str(ca)
    assert connection.timeout == 5.0
    assert connection.http_user == "proxy"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"zabbix_api_token": None}, "ZABBIX_API_TOKEN"),
        ({"zabbix_url": "zabbix.example.com"}, "http(s) URL"),
        ({"zabbix_url": "https://u:p@zabbix.example.com"}, "credentials"),
        ({"zabbix_http_user": "proxy"}, "go together"),
        ({"zabbix_ca_bundle": "/nonexistent/ca.pem"}, "no such file"),
        ({"acker_message_template": "{verb} by {who} {ref}"}, "via Yobidashi"),
        ({"acker_message_template": "{verb} via Yobidashi"}, "{ref}"),
        ({"acker_message_template": "{phone} via Yobidashi {ref}"}, "unknown fields"),
        ({"acker_default_timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"acker_retry_backoff": "0s"}, "above 0"),
        ({"acker_claim_stale": "49s"}, "ZABBIX_TIMEOUT"),
    ],
)
def test_invalid_settings_say_what_is_wrong(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(**overrides)


def test_tls_verification_can_be_turned_off_only_explicitly() -> None:
    assert settings(zabbix_tls_verify=False).zabbix_connection().verify is False
