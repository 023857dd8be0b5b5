"""Debian packages: install only what is missing, never Apache (gotcha 2 in the notes)."""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path

from .config import DevConfig
from .system import DevError, Unsupported, have_sudo, is_root, port_open, run, say

# php-cgi must come first: it satisfies php8.2's "libapache2-mod-php8.2 | php8.2-fpm |
# php8.2-cgi" before apt picks its first alternative, Apache.
PACKAGES = (
    "php-cgi",
    "php-cli",
    "zabbix-server-pgsql",
    "zabbix-frontend-php",
    "php-pgsql",
    "php-gd",
    "php-bcmath",
    "php-mbstring",
    "php-xml",
    "php-ldap",
    "postgresql-client",
)


def installed_among(packages: list[str] | tuple[str, ...]) -> set[str]:
    """Which of ``packages`` are installed (one dpkg-query call; unknown names are skipped)."""
    proc = run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *packages], check=False, timeout=30
    )
    found = set()
    for line in proc.stdout.decode().splitlines():
        name, _, status = line.partition(" ")
        if status == "install ok installed":
            found.add(name)
    return found


def postgres_server_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin dir (Debian keeps them per version)."""
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if candidates:
        return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_packages(config: DevConfig) -> list[str]:
    present = installed_among(PACKAGES)
    missing = [p for p in PACKAGES if p not in present]
    # Any psql will do (a PGDG client, for example); the metapackage is only a fallback.
    if "postgresql-client" in missing and shutil.which("psql"):
        missing.remove("postgresql-client")
    if not port_open(config.pg_port) and postgres_server_bindir() is None:
        missing.append("postgresql")
    return missing


def privilege_prefix() -> list[str]:
    if is_root():
        return []
    if have_sudo():
        return ["sudo", "-n"]
    raise Unsupported("installing packages needs root or passwordless sudo (sudo -n)")


def check_supported() -> None:
    """Raise `Unsupported` when this machine cannot have the Debian packages at all."""
    if not Path("/etc/debian_version").exists() or not shutil.which("dpkg-query"):
        raise Unsupported("not a Debian-based system (needs dpkg and apt)")
    if not shutil.which("apt-get"):
        raise Unsupported("apt-get not found")


def install(config: DevConfig) -> list[str]:
    """Install the missing packages; return what was installed (empty when nothing was)."""
    check_supported()
    missing = missing_packages(config)
    if not missing:
        return []
    try:
        prefix = privilege_prefix()
    except Unsupported as exc:
        raise Unsupported(f"{exc}; missing packages: {' '.join(missing)}") from exc
    config.log_dir.mkdir(parents=True, exist_ok=True)
    apt_log = config.log_dir / "apt.log"
    say(f"installing {' '.join(missing)} (log: {apt_log})")
    started = time.monotonic()
    # Explicit env, because sudo drops DEBIAN_FRONTEND unless it is on the command line.
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    # apt keeps the caller's proxy settings: it may need them to reach the archive.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run([*apt, "update"], env=env, stdout_path=apt_log, timeout=900)
    run(
        [*apt, "install", "-y", "--no-install-recommends", *missing],
        env=env,
        stdout_path=apt_log,
        timeout=1800,
    )
    present = installed_among(missing)
    still = [p for p in missing if p not in present]
    if still:
        raise DevError(f"apt-get did not install {' '.join(still)}; see {apt_log}")
    say(f"packages installed in {time.monotonic() - started:.1f} s")
    return missing
