"""A loop a component keeps running while the dialer is up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundTask:
    """Started once however often `start` is called; `stop` waits until the loop has ended, so
    nothing it was doing outlives the bus it used."""

    def __init__(self, loop: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._loop = loop
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
