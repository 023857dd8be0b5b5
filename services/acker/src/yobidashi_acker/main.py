"""``yobidashi-acker``: run the acker service, configured only by environment variables."""

from yobidashi_acker.app import create_app
from yobidashi_acker.settings import AckerSettings
from yobidashi_common.service import run
from yobidashi_common.settings import load_settings


def main() -> None:
    settings = load_settings(AckerSettings)
    run(create_app(settings), settings, "acker")


if __name__ == "__main__":
    main()
