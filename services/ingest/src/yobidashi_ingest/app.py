"""Ingest's HTTP surface: ``POST /v1/zabbix`` and the ops routes.

A webhook is answered 202 only after JetStream stored the alert. Anything else gets a 4xx that
says what is wrong, or a 503 with ``Retry-After`` so that Zabbix's own retries deliver it later.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.routing import request_response

from yobidashi_common.bus import Bus, BusUnavailable
from yobidashi_common.events import OWN_ACK_MARKER, AlertStatus, utcnow
from yobidashi_common.phone import mask
from yobidashi_common.service import bearer_json_body, service_app, start_stop_lifespan
from yobidashi_common.subjects import alert_subject, shared_streams
from yobidashi_common.telemetry import bind_trace, get_logger, new_traceparent, register_secret
from yobidashi_ingest import metrics
from yobidashi_ingest.settings import IngestSettings
from yobidashi_ingest.zabbix import (
    FROM_JSON_BYTES,
    NormalizationError,
    ZabbixWebhook,
    to_alert_event,
)

log = get_logger(__name__)


class Accepted(BaseModel):
    id: str
    duplicate: bool
    problem_key: str
    status: AlertStatus


JSON = "application/json"


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    message: str
    details: list[ErrorDetail] = []


class _Reject(Exception):
    def __init__(
        self, status: int, error: str, message: str, details: list[ErrorDetail] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=error, message=message, details=details or [])


def _field_errors(exc: ValidationError) -> list[ErrorDetail]:
    return [
        ErrorDetail(field=".".join(str(p) for p in err["loc"]) or "(body)", message=err["msg"])
        for err in exc.errors(include_url=False)
    ]


def create_app(settings: IngestSettings, bus: Bus | None = None) -> FastAPI:
    bus = bus or Bus(settings, "yobidashi-ingest", streams=shared_streams(settings))
    token = settings.ingest_token.get_secret_value().encode()
    register_secret(settings.ingest_token.get_secret_value())

    app = service_app(
        "ingest",
        "Receives Zabbix webhooks (our media type) and stores them as alert events.",
        start_stop_lifespan(bus.start, bus.close),
        lambda: {"nats": bus.ready},
    )
    app.state.bus = bus

    def check_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token):
            raise _Reject(401, "unauthorized", "missing or wrong bearer token")

    async def read_body(request: Request) -> bytes:
        limit = settings.ingest_max_body_bytes
        declared = request.headers.get("content-length", "")
        too_large = _Reject(413, "too_large", f"body exceeds {limit} bytes")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body)

    def parse(body: bytes) -> ZabbixWebhook:
        # Parsed and validated in one pass by pydantic-core, straight from the bytes.
        try:
            return ZabbixWebhook.model_validate_json(body, context={FROM_JSON_BYTES: True})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["type"] == "json_invalid":
                detail = first.get("ctx", {}).get("error", first["msg"])
                reason = f"body is not valid JSON: {detail}"
                raise _Reject(422, "invalid_json", reason) from None
            if first["type"] == "model_type" and not first["loc"]:
                raise _Reject(422, "invalid_payload", "body must be a JSON object") from None
            raise _Reject(
                422, "invalid_payload", "the payload has invalid fields", _field_errors(exc)
            ) from None

    @app.post(
        "/v1/zabbix",
        status_code=202,
        response_model=Accepted,
        summary="Receive one Zabbix notification",
        responses={
            401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
            413: {"model": ErrorBody, "description": "Body too large."},
            422: {"model": ErrorBody, "description": "Not JSON, or invalid fields."},
            503: {"model": ErrorBody, "description": "The bus cannot store it now; retry."},
        },
        openapi_extra=bearer_json_body({"$ref": "#/components/schemas/ZabbixWebhook"}),
    )
    async def receive_zabbix(request: Request) -> Any:
        started = time.perf_counter()
        traceparent = new_traceparent(request.headers.get("traceparent"))
        bind_trace(traceparent)
        try:
            return await _receive(request, traceparent)
        except _Reject as rej:
            metrics.REQUESTS.labels(rej.body.error).inc()
            metrics.REJECTS.labels(rej.body.error).inc()
            log.info("ingest.rejected", reason=rej.body.error, message=rej.body.message)
            headers = {"WWW-Authenticate": "Bearer"} if rej.status == 401 else None
            return JSONResponse(rej.body.model_dump(), status_code=rej.status, headers=headers)
        finally:
            metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)

    async def _receive(request: Request, traceparent: str) -> Any:
        check_token(request)
        payload = parse(await read_body(request))
        try:
            event = to_alert_event(
                payload,
                received_at=utcnow(),
                timezone=settings.timezone,
                own_users=settings.zabbix_own_users,
                own_marker=OWN_ACK_MARKER,
                zabbix_url=settings.zabbix_url,
            )
        except NormalizationError as exc:
            raise _Reject(
                422,
                "invalid_payload",
                str(exc),
                [ErrorDetail(field=exc.field, message=exc.message)],
            ) from None
        bind_trace(traceparent, event_id=event.source_event_id, dedup_key=event.dedup_key)
        published_at = time.perf_counter()
        try:
            result = await bus.publish(
                alert_subject(event.status, event.severity),
                event,
                msg_id=event.dedup_key,
                traceparent=traceparent,
            )
        except BusUnavailable as exc:
            metrics.REQUESTS.labels("unavailable").inc()
            metrics.REJECTS.labels("unavailable").inc()
            log.warning("ingest.bus_unavailable", error=str(exc))
            return JSONResponse(
                ErrorBody(
                    error="unavailable",
                    message="the alert could not be stored; Zabbix will retry",
                ).model_dump(),
                status_code=503,
                headers={"Retry-After": str(int(settings.ingest_retry_after))},
            )
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - published_at)
        metrics.REQUESTS.labels("duplicate" if result.duplicate else "accepted").inc()
        if not result.duplicate:
            metrics.ALERTS.labels(event.status.value, event.severity.value).inc()
            if event.update is not None and event.update.from_yobidashi:
                metrics.OWN_UPDATES.inc()
        log.info(
            "ingest.accepted",
            status=event.status.value,
            severity=event.severity.value,
            duplicate=result.duplicate,
            stream_seq=result.seq,
            sendto=mask(event.sendto) if event.sendto else None,
            own_update=bool(event.update and event.update.from_yobidashi),
        )
        accepted = Accepted(
            id=event.dedup_key,
            duplicate=result.duplicate,
            problem_key=event.problem_key,
            status=event.status,
        )
        return Response(accepted.model_dump_json(), status_code=202, media_type=JSON)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            webhook = ZabbixWebhook.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(webhook.pop("$defs", {}))
            components["schemas"]["ZabbixWebhook"] = webhook
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # The route stays in the OpenAPI document as declared above, but is served as a plain
    # Starlette endpoint: it takes only the Request, so FastAPI's per-request dependency
    # solving and response-model handling would be pure overhead on the hot path.
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == "/v1/zabbix":
            route.app = request_response(receive_zabbix)
    return app
