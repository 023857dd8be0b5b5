"""``/v1/overrides``: list, add and remove on-call overrides (writes need the admin token)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr, ValidationError

from yobidashi_common.bus import BusUnavailable
from yobidashi_common.service import bearer_json_body
from yobidashi_dialer.oncall.config import OnCallConfig
from yobidashi_dialer.oncall.overrides import OverrideRequest, Rejected, RuntimeOverride
from yobidashi_dialer.overrides import OverrideBook

MAX_BODY = 16_384


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code, e.g. invalid_field.")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class OverrideView(BaseModel):
    id: str
    schedule: str
    contact: str
    from_: str = Field(alias="from")
    until: str
    replacing: str | None
    by: str | None
    note: str | None
    created_at: str


class OverrideList(BaseModel):
    overrides: list[OverrideView]


def error_response(status: int, error: str, message: str, field: str | None = None) -> JSONResponse:
    details = [ErrorDetail(field=field, message=message)] if field else []
    body = ErrorBody(error=error, message=message, details=details)
    return JSONResponse(body.model_dump(), status_code=status)


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong admin token."},
    503: {"model": ErrorBody, "description": "Writes are off (no admin token set) or no bus."},
}


def admin_refusal(request: Request, admin_token: SecretStr | None) -> JSONResponse | None:
    """The answer to a change without the admin token; None when the token is right."""
    if admin_token is None:
        return error_response(
            503,
            "writes_disabled",
            "changes through the API are off: set YOBIDASHI_ADMIN_TOKEN on the dialer",
        )
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = admin_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
        return error_response(401, "unauthorized", "missing or wrong admin token")
    return None


def router(
    book: OverrideBook, config: Callable[[], OnCallConfig], admin_token: SecretStr | None
) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["overrides"])

    def view(override: RuntimeOverride) -> dict[str, Any]:
        schedule = config().schedule(override.schedule)
        return override.view(schedule.timezone if schedule else "UTC")

    def refused(request: Request) -> JSONResponse | None:
        return admin_refusal(request, admin_token)

    @routes.get(
        "/overrides", summary="Overrides not over yet, soonest first", response_model=OverrideList
    )
    async def list_overrides(
        schedule: str | None = Query(None, description="Only this schedule"),
    ) -> Any:
        found = [o for o in book.all() if schedule is None or o.schedule == schedule]
        return {"overrides": [view(o) for o in found]}

    @routes.post(
        "/overrides",
        status_code=201,
        summary="Add an override (times without an offset are in the schedule's timezone)",
        response_model=OverrideView,
        responses={
            **_ERRORS,
            409: {"model": ErrorBody, "description": "Overlaps another override."},
            413: {"model": ErrorBody, "description": "Body too large."},
            422: {"model": ErrorBody, "description": "Invalid field (named in details)."},
        },
        openapi_extra=bearer_json_body(OverrideRequest.model_json_schema(by_alias=True)),
    )
    async def add_override(request: Request) -> Any:
        if (refusal := refused(request)) is not None:
            return refusal
        body = await request.body()
        if len(body) > MAX_BODY:
            return error_response(413, "too_large", f"body exceeds {MAX_BODY} bytes")
        try:
            wanted = OverrideRequest.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            details = [
                ErrorDetail(
                    field=".".join(str(p) for p in e["loc"]).replace("from_", "from") or "(body)",
                    message=e["msg"],
                )
                for e in errors
            ]
            first = errors[0]
            kind = "invalid_json" if first["type"] == "json_invalid" else "invalid_field"
            payload = ErrorBody(
                error=kind, message="the override has invalid fields", details=details
            )
            return JSONResponse(payload.model_dump(), status_code=422)
        try:
            made = await book.add(wanted)
        except Rejected as exc:
            error = "overlap" if exc.conflict else "invalid_field"
            return error_response(409 if exc.conflict else 422, error, exc.message, exc.field)
        except BusUnavailable as exc:
            return error_response(503, "unavailable", f"cannot store it now, retry: {exc}")
        return JSONResponse(view(made), status_code=201)

    @routes.delete(
        "/overrides/{override_id}",
        summary="Remove an override",
        response_model=OverrideView,
        responses={
            **_ERRORS,
            404: {"model": ErrorBody, "description": "No such override (or it is over)."},
        },
        openapi_extra={"security": [{"bearer": []}]},
    )
    async def remove_override(override_id: str, request: Request) -> Any:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            removed = await book.remove(override_id)
        except BusUnavailable as exc:
            return error_response(503, "unavailable", f"cannot change it now, retry: {exc}")
        if removed is None:
            return error_response(404, "not_found", f"no override {override_id!r}", "override_id")
        return view(removed)

    return routes
