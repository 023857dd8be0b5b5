"""Which Zabbix versions the dev harness can run, and where each one comes from.

6.0 is Debian bookworm's own package set, installed on this (bookworm) machine. Newer versions
come from a newer Debian suite, installed into a minbase chroot per run dir: the suite is a
setting (``ZBX_DEV_SUITE``), so sid's newer 7.0, or an 8.0 once Debian ships it, is one
setting away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

DEFAULT_VERSION = "7.0"
# What the harness's own tests and `make zabbix-up` bring up.
TESTED_VERSIONS = ("6.0", "7.0")


class Source(Enum):
    HOST = "host"  # the machine's own Debian packages
    CHROOT = "chroot"  # a Debian suite's packages in a chroot in the run dir


@dataclass(frozen=True)
class VersionSpec:
    version: str  # "major.minor"
    source: Source
    web_port: int
    server_port: int
    private_pg_port: int
    run_dir_name: str
    db_name: str
    suite: str | None  # the Debian suite that ships it (chroot only); None: none known yet

    @property
    def token(self) -> str:
        """``"7.0"`` -> ``"70"``: the infix of per-version settings (``ZBX_DEV_70_WEB_PORT``)."""
        return self.version.replace(".", "")


KNOWN = {
    spec.version: spec
    for spec in (
        # 6.0 keeps the names and ports it always had: running instances stay valid.
        VersionSpec("6.0", Source.HOST, 18081, 10151, 15432, "zabbix", "yobidashi_zabbix", None),
        VersionSpec(
            "7.0", Source.CHROOT, 18082, 10152, 15433, "zabbix-7.0", "yobidashi_zabbix_70", "trixie"
        ),
        # Zabbix 8.0 LTS is not in Debian yet; ZBX_DEV_SUITE names a suite once one ships it.
        VersionSpec(
            "8.0", Source.CHROOT, 18083, 10153, 15434, "zabbix-8.0", "yobidashi_zabbix_80", None
        ),
    )
}

_MAJOR_MINOR = re.compile(r"^(\d+)\.(\d+)")


def spec_for(version: str) -> VersionSpec:
    try:
        return KNOWN[version.strip()]
    except KeyError:
        known = ", ".join(KNOWN)
        raise ValueError(f"unknown Zabbix version {version!r}; known: {known}") from None


def major_minor(version: str) -> str:
    """``"1:7.0.22+dfsg-1~deb13u1"`` or ``"7.0.22"`` -> ``"7.0"``."""
    upstream = version.split(":", 1)[-1]
    match = _MAJOR_MINOR.match(upstream)
    if match is None:
        raise ValueError(f"not a Zabbix version: {version!r}")
    return f"{match[1]}.{match[2]}"


def version_tuple(version: str) -> tuple[int, int]:
    """``"7.0.22"`` -> ``(7, 0)``: what API differences are keyed on."""
    major, minor = major_minor(version).split(".")
    return int(major), int(minor)
