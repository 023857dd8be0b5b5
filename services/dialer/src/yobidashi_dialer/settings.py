"""Dialer's configuration: one class, read from the environment."""

from __future__ import annotations

from pydantic import Field

from yobidashi_common.settings import ServiceSettings


class DialerSettings(ServiceSettings):
    port: int = Field(8001, ge=1, le=65535)
