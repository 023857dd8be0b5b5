"""Debian packages: install only what is missing, never Apache (gotcha 2 in the notes).

6.0 runs from this machine's packages. A chroot version needs only mmdebstrap and zstd here;
its own packages go into the cached chroot tarball (`chroot.ensure_tarball`).
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path

from . import chroot
from .config import DevConfig
from .system import DevError, Unsupported, have_sudo, is_root, port_open, run, say

# php-cgi must come first (it does, in chroot.ZABBIX_PACKAGES): it satisfies php8.2's
# "libapache2-mod-php8.2 | php8.2-fpm | php8.2-cgi" before apt picks its first alternative,
# Apache.
HOST_PACKAGES = (*chroot.ZABBIX_PACKAGES, "postgresql-client")
CHROOT_TOOLS = ("mmdebstrap", "zstd")


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
    if config.in_chroot:
        present = installed_among(CHROOT_TOOLS)
        return [p for p in CHROOT_TOOLS if p not in present]
    present = installed_among(HOST_PACKAGES)
    missing = [p for p in HOST_PACKAGES if p not in present]
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
    """Install what is missing; return what was installed (empty when nothing was).

    For a chroot version that includes bootstrapping the machine-wide chroot tarball.
    """
    check_supported()
    if config.in_chroot and not is_root():
        raise Unsupported(f"Zabbix {config.version} runs in a chroot, which needs root")
    installed = _apt_install(config, missing_packages(config))
    if config.in_chroot and not chroot.tarball(config).is_file():
        chroot.ensure_tarball(config)
        installed.append(chroot.tarball(config).name)
    return installed


def _apt_install(config: DevConfig, missing: list[str]) -> list[str]:
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
    return list(missing)
