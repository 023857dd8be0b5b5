"""``yobidashi-ingest``: run the ingest service, configured only by environment variables."""

from yobidashi_common.service import run
from yobidashi_common.settings import load_settings
from yobidashi_ingest.app import create_app
from yobidashi_ingest.settings import IngestSettings


def main() -> None:
    settings = load_settings(IngestSettings)
    run(create_app(settings), settings, "ingest")


if __name__ == "__main__":
    main()
