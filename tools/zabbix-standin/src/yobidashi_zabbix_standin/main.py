"""``yobidashi-zabbix-standin``: serve the stand-in on a port, configured from the environment."""

from __future__ import annotations

import uvicorn

from yobidashi_zabbix_standin.app import StandInApp
from yobidashi_zabbix_standin.settings import StandInSettings


def main() -> None:
    settings = StandInSettings()
    uvicorn.run(
        StandInApp(settings.standin()),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="off",
    )


if __name__ == "__main__":
    main()
