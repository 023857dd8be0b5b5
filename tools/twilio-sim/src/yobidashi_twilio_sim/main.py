"""`yobidashi-twilio-sim`: run the simulator under uvicorn with settings from the environment."""

from __future__ import annotations

import uvicorn

from yobidashi_twilio_sim.app import create_app
from yobidashi_twilio_sim.settings import SimSettings


def main() -> None:
    settings = SimSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
