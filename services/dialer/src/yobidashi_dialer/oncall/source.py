"""Where the on-call config comes from, and when it changed: for the start and for reloads."""

from __future__ import annotations

import sys
from pathlib import Path

from yobidashi_common.telemetry import get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.oncall.config import OnCallConfig
from yobidashi_dialer.oncall.loader import ConfigError, load

log = get_logger(__name__)


class OnCallSource:
    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self._seen: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat() if self.path else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    def load_or_exit(self) -> OnCallConfig:
        """At start: a broken config stops the service with the reasons, line by line."""
        if self.path is None:
            return OnCallConfig()
        self._seen = self._stamp()
        try:
            return load(self.path)
        except ConfigError as exc:
            print(exc.report(), file=sys.stderr)  # noqa: T201 - before logging is set up
            raise SystemExit(2) from None

    def changed(self) -> bool:
        return self.path is not None and self._stamp() != self._seen

    def reload(self) -> OnCallConfig | None:
        """The new config, or None (the old one stays) when it is broken."""
        if self.path is None:
            return None
        self._seen = self._stamp()
        try:
            config = load(self.path)
        except ConfigError as exc:
            metrics.CONFIG_RELOADS.labels("invalid").inc()
            log.error("config.invalid", problems=[str(p) for p in exc.problems])
            return None
        metrics.CONFIG_RELOADS.labels("ok").inc()
        log.info(
            "config.reloaded",
            contacts=len(config.contacts),
            schedules=len(config.schedules),
            policies=len(config.policies),
            routes=len(config.routes),
        )
        return config
