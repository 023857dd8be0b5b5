"""What the dev frontend's PHP logged during a test (``<run dir>/log/php.log``).

Zabbix reports deprecated API usage (body ``auth`` on 7.0, renamed parameters) as a PHP
``E_USER_DEPRECATED`` notice in that log and nowhere in the answer, so a client that looks
fine can still be using something the next version removes.
"""

from __future__ import annotations

from pathlib import Path


class PhpLog:
    """Lines appended to a PHP log after this object was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                return log.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def deprecations(self) -> list[str]:
        return [line for line in self.new_lines() if "PHP Deprecated:" in line]
