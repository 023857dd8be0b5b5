"""Serving the stand-in with uvicorn on the running event loop (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from yobidashi_zabbix_standin.api import ZabbixStandIn
from yobidashi_zabbix_standin.app import StandInApp


@contextlib.asynccontextmanager
async def serve(
    standin: ZabbixStandIn,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: tuple[Path, Path] | None = None,
    log_level: str = "critical",
) -> AsyncIterator[str]:
    """Serve ``standin`` until the block ends; yields the frontend's base URL (port 0: free).

    ``tls`` is (certificate, key): the URL is then ``https``. The default log level keeps
    uvicorn quiet about the connections a fault closes on purpose.
    """
    config = uvicorn.Config(
        StandInApp(standin),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ws="none",
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"zabbix-standin-{host}:{port}")
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
            raise RuntimeError("the Zabbix stand-in stopped before it started")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    standin.url = f"{'https' if tls else 'http'}://{host}:{bound}"
    try:
        yield standin.url
    finally:
        standin.faults.clear()  # let requests held by a gate finish
        server.should_exit = True
        await task
