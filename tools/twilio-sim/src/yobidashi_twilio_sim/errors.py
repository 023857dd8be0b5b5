"""Twilio's REST error bodies: `{"code", "message", "more_info", "status"}`."""

from __future__ import annotations

from fastapi.responses import JSONResponse

AUTHENTICATE = 20003
NOT_FOUND = 20404
TOO_MANY_REQUESTS = 20429
INTERNAL_ERROR = 20500
SERVICE_UNAVAILABLE = 20503
INVALID_PARAMETER = 20001  # generic "bad value" code (exact code unverified)
TO_REQUIRED = 21201
URL_INVALID = 21205
TO_INVALID = 21211
FROM_INVALID = 21212
FROM_REQUIRED = 21213
APPLICATION_SID_INVALID = 21218
CALL_NOT_IN_PROGRESS = 21220
STATUS_CALLBACK_INVALID = 21609
STATUS_CALLBACK_EVENT_INVALID = 21626
TWIML_TOO_LONG = 32018
# Refusals of an account that cannot call (the `refuse_creates` fault): status and message.
ACCOUNT_REFUSALS: dict[int, tuple[int, str]] = {
    10001: (400, "Account is not active"),
    20003: (401, "Authenticate"),
    20005: (403, "Account not active"),
    21210: (400, "The source phone number provided is not yet verified for your account."),
    21215: (400, "Geo Permission configuration is not permitting call"),
    21216: (400, "Call blocked by Twilio blocklist or geo permissions"),
}


class TwilioApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message)


def error_response(status: int, code: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
    return JSONResponse(
        status_code=status,
        content={
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        headers=headers,
    )
