"""Sending webhooks exactly as Twilio does, and journaling each one on its call."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from yobidashi_twilio_sim.calls import Call

USER_AGENT = "TwilioProxy/1.1"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_JOURNALED_BODY = 64 * 1024


@dataclass(frozen=True)
class WebhookResponse:
    status: int | None
    body: bytes
    content_type: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def signed_url(url: str, method: str, params: list[tuple[str, str]]) -> str:
    """The exact URL requested: for GET, Twilio appends the params to the query string."""
    if method == "GET" and params:
        return url + ("&" if "?" in url else "?") + urlencode(params)
    return url


class WebhookSender:
    def __init__(self, auth_token: str, timeout: float) -> None:
        self._validator = RequestValidator(auth_token)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=True)

    def signature(self, url: str, method: str, params: list[tuple[str, str]]) -> str:
        """X-Twilio-Signature: HMAC-SHA1 over the URL plus (for POST) the sorted params,
        blank values included. Delegates to the official library so the two cannot drift."""
        if method == "GET":
            return str(self._validator.compute_signature(signed_url(url, method, params), {}))
        return str(self._validator.compute_signature(url, dict(params)))

    async def send(
        self, call: Call, kind: str, url: str, method: str, params: list[tuple[str, str]]
    ) -> WebhookResponse:
        method = method.upper()
        request_url = signed_url(url, method, params)
        token = str(uuid.uuid4())
        signature = self.signature(url, method, params)
        headers = {
            "X-Twilio-Signature": signature,
            "User-Agent": USER_AGENT,
            "I-Twilio-Idempotency-Token": token,
            "X-Home-Region": "us1",
            "Accept": "*/*",
            "Cache-Control": "max-age=259200",
        }
        entry: dict[str, Any] = {
            "kind": kind,
            "method": method,
            "url": request_url,
            "params": dict(params),
            "signature": signature,
            "idempotency_token": token,
            "sent_at": time.time(),
            "response_status": None,
            "response_content_type": None,
            "response_body": None,
            "error": None,
            "elapsed_ms": None,
        }
        # Journal at send time so the order is the order Twilio would have sent them in.
        call.webhooks.append(entry)
        started = time.monotonic()
        try:
            if method == "GET":
                response = await self._client.get(request_url, headers=headers)
            else:
                headers["Content-Type"] = FORM_CONTENT_TYPE
                response = await self._client.post(
                    url, content=urlencode(params).encode("utf-8"), headers=headers
                )
        except asyncio.CancelledError:
            entry["error"] = "cancelled: the call moved on before the response arrived"
            raise
        except httpx.HTTPError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
            return WebhookResponse(None, b"", "", entry["error"])
        body = response.content
        content_type = response.headers.get("content-type", "")
        entry.update(
            response_status=response.status_code,
            response_content_type=content_type,
            response_body=body[:MAX_JOURNALED_BODY].decode("utf-8", errors="replace"),
            elapsed_ms=round((time.monotonic() - started) * 1000, 3),
        )
        return WebhookResponse(response.status_code, body, content_type, None)

    async def aclose(self) -> None:
        await self._client.aclose()
