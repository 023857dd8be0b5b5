"""Structured JSON logs that never carry a secret or a full phone number, and trace context."""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from yobidashi_common.phone import mask_in_text

_SECRET_KEY = re.compile(r"(token|password|passwd|secret|authorization|auth|creds|signature)", re.I)
_registered_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Remember secret values so that they are blanked wherever they appear in a log line."""
    for value in values:
        if value and len(value) >= 6:
            _registered_secrets.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _registered_secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return mask_in_text(value)
    if isinstance(value, Mapping):
        return {k: ("***" if _is_secret_key(k) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _is_secret_key(key: object) -> bool:
    # `auth_mode` or `token_kind` describe a secret without being one.
    return (
        isinstance(key, str)
        and bool(_SECRET_KEY.search(key))
        and not key.endswith(("_mode", "_kind"))
    )


def scrub_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Last line of defence: mask phone numbers and blank secrets in every field."""
    event_dict.pop("color_message", None)  # uvicorn's ANSI duplicate of "event"
    for key in list(event_dict):
        if _is_secret_key(key):
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """JSON logs on stdout for the service and for every stdlib logger (uvicorn, nats, twilio)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_processor,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # HTTP libraries that log every request: twilio's client at INFO (numbers, URLs), httpx at
    # INFO (each request's URL and status). They only ever speak up for warnings.
    for noisy in ("twilio", "httpx", "httpcore", "urllib3", "asyncio", "requests"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service, pid=os.getpid())


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


# --- trace context -----------------------------------------------------------------------------
# W3C traceparent, carried in HTTP headers and NATS message headers, so that one alert can be
# followed through ingest, dialer and acker logs without a tracing backend.

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def new_traceparent(parent: str | None = None) -> str:
    """A child span id under ``parent``'s trace, or a fresh trace when there is none."""
    match = _TRACEPARENT.match(parent or "")
    trace_id = match.group(1) if match else secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match else None


def bind_trace(traceparent: str | None, **fields: Any) -> None:
    """Bind the trace and any ids (event_id, call_sid...) to this task's log lines."""
    structlog.contextvars.bind_contextvars(trace_id=trace_id_of(traceparent), **fields)


def clear_bound(keys: Iterable[str]) -> None:
    structlog.contextvars.unbind_contextvars(*keys)


def headers_with_trace(headers: MutableMapping[str, str], traceparent: str | None) -> None:
    if traceparent:
        headers["traceparent"] = traceparent
