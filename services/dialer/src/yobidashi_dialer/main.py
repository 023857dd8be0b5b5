"""``yobidashi-dialer``: run the dialer service, configured only by environment variables."""

from yobidashi_common.service import run
from yobidashi_common.settings import load_settings
from yobidashi_dialer.app import create_app
from yobidashi_dialer.settings import DialerSettings


def main() -> None:
    settings = load_settings(DialerSettings)
    run(create_app(settings), settings, "dialer")


if __name__ == "__main__":
    main()
