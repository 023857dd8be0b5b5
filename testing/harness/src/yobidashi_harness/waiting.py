"""Polling with a deadline and a timeout message that says what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    description: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.5
) -> T:
    """Call ``probe`` until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {description}")
        time.sleep(interval)
