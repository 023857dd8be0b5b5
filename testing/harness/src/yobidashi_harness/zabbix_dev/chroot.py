"""A minbase chroot of a newer Debian suite, cached machine-wide as a tarball.

Bootstrapping (mmdebstrap, about a minute) happens once per machine and package set: the
result is a tarball in the cache dir (``/var/cache/yobidashi/zabbix-dev``), keyed by
everything that goes into it. Each run dir then unpacks its own copy (a few seconds) into a
chroot of its own (``/var/lib/yobidashi/zabbix-dev/chroots/<run dir name>-<hash>``), so two
checkouts never share a chroot, its /proc mount or its files. Only /proc is ever mounted in
it, and only while something runs there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .config import CHROOT_STATE_DIR, DevConfig
from .mounts import mount_proc, mounts_under, remove_tree, unmount
from .runtime import Runtime
from .system import DevError, locked, processes_rooted_at, run, say
from .versions import major_minor

# Zabbix's server and frontend and the PHP they need, in the chroot as on this machine
# (install.HOST_PACKAGES). php-cgi first: it satisfies php8.x's "libapache2-mod-php | php-fpm |
# php-cgi" before apt picks the first alternative, Apache.
ZABBIX_PACKAGES = (
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
)
# postgresql is always in: a machine-wide tarball cannot know whether the next machine state
# has a PostgreSQL to reuse.
PACKAGES = (
    *ZABBIX_PACKAGES,
    "postgresql",
    "postgresql-client",
    "zabbix-sender",
    "tzdata",
    "locales",
)
# Bump when the recipe below changes, so that cached tarballs are rebuilt.
RECIPE_REVISION = "1"
EATMYDATA_HOOKS = "/usr/share/mmdebstrap/hooks/eatmydata"
_STAMP = ".yobidashi-chroot"  # the tarball it was unpacked from
_OWNER = ".yobidashi-run-dir"  # the run dir it belongs to
_SETUP_HOOKS = (
    # No package's postinst, now or later, may start a service. mmdebstrap would put its own
    # policy-rc.d in place while it installs and then delete it: --skip=chroot/policy-rc.d.
    'mkdir -p "$1/usr/sbin"',
    "printf '#!/bin/sh\\nexit 101\\n' > \"$1/usr/sbin/policy-rc.d\"",
    'chmod 755 "$1/usr/sbin/policy-rc.d"',
    # postgresql's postinst would create and configure a "main" cluster nobody uses.
    'mkdir -p "$1/etc/postgresql-common/createcluster.d"',
    'echo "create_main_cluster = false" > '
    '"$1/etc/postgresql-common/createcluster.d/yobidashi.conf"',
)
_CUSTOMIZE_HOOKS = (
    # Without en_US.UTF-8 every frontend page complains; the API does not care.
    'echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen"',
    'chroot "$1" locale-gen',
    'mkdir -p -m 1777 "$1/dev/shm"',
)
# Documentation, manual pages and message catalogues are about a third of the chroot and
# nothing here reads them (the frontend's own translations are in /usr/share/zabbix/locale).
_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)


def _architecture() -> str:
    proc = run(["dpkg", "--print-architecture"], timeout=30)
    return proc.stdout.decode().strip() or platform.machine()


def tarball(config: DevConfig) -> Path:
    """The cache file for this config's suite, mirror and recipe."""
    if config.suite is None:
        raise DevError(
            f"no Debian suite is known to ship Zabbix {config.version} yet; "
            f"set {config.setting_name('SUITE')} to one that does"
        )
    recipe = {
        "revision": RECIPE_REVISION,
        "suite": config.suite,
        "mirror": config.mirror,
        "packages": PACKAGES,
        "setup": _SETUP_HOOKS,
        "dpkg": _DPKG_OPTIONS,
        "customize": _CUSTOMIZE_HOOKS,
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return config.cache_dir / f"zabbix-chroot-{config.suite}-{_architecture()}-{key}.tar.zst"


def manifest_file(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".tar.zst") + ".packages")


def manifest(path: Path) -> dict[str, str]:
    """``{package: version}`` of a cached tarball, written next to it when it was built."""
    try:
        lines = manifest_file(path).read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in lines if " " in line)


def check_ships_version(config: DevConfig, packages: dict[str, str]) -> str:
    """The zabbix-server-pgsql version; an error if the suite ships another major.minor."""
    version = packages.get("zabbix-server-pgsql")
    if version is None:
        raise DevError(f"the {config.suite} chroot has no zabbix-server-pgsql")
    if major_minor(version) != config.version:
        raise DevError(
            f"Debian {config.suite} ships Zabbix {version}, not {config.version}; "
            f"set {config.setting_name('SUITE')} to a suite that ships {config.version}"
        )
    return version


def ensure_tarball(config: DevConfig) -> Path:
    """Bootstrap into the cache unless the tarball is there; return its path."""
    path = tarball(config)
    if path.is_file():
        check_ships_version(config, manifest(path))
        return path
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    # One bootstrap per tarball at a time, machine-wide (two checkouts' `make test`).
    with locked(path.with_name(path.name + ".lock")):
        if path.is_file():
            return path
        _bootstrap(config, path)
    check_ships_version(config, manifest(path))
    return path


def _bootstrap(config: DevConfig, path: Path) -> None:
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log = config.log_dir / "bootstrap.log"
    compressed = path.with_name(path.name + ".partial")
    listing = path.with_name(path.name + ".packages-partial")
    say(f"bootstrapping a Debian {config.suite} chroot into {path} (about a minute; log: {log})")
    started = time.monotonic()
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=tar",
        # dpkg without fsync (eatmydata, for the build only): the chroot is rebuilt, not repaired.
        f"--hook-dir={EATMYDATA_HOOKS}",
        # Signatures are still checked; but a snapshot mirror (or a mirror serving a frozen sid)
        # has Release files whose Valid-Until has passed, and apt would refuse them.
        "--aptopt=Acquire::Check-Valid-Until false",
        f"--include={','.join(PACKAGES)}",
        "--skip=chroot/policy-rc.d",
        *(f"--dpkgopt={option}" for option in _DPKG_OPTIONS),
        *(f"--setup-hook={hook}" for hook in _SETUP_HOOKS),
        *(f"--customize-hook={hook}" for hook in _CUSTOMIZE_HOOKS),
        # The package list of exactly this tarball, for `check_ships_version` and the README.
        "--customize-hook=chroot \"$1\" dpkg-query -W -f='${Package} ${Version}\\n' > "
        + shlex.quote(str(listing)),
        config.suite or "",
        "-",  # the tarball on stdout, compressed on the fly rather than written twice
        f"deb {config.mirror} {config.suite} main",
    ]
    # apt keeps the caller's proxy settings: it may need them to reach the mirror.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "TMPDIR": str(config.cache_dir)}
    try:
        with log.open("ab") as log_file, compressed.open("wb") as out:
            # -T0: all cores; level 3 is quick and still shrinks it about threefold.
            zstd = subprocess.Popen(
                ["zstd", "-q", "-T0", "-3", "-c"],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=log_file,
            )
            assert zstd.stdin is not None
            strap = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=zstd.stdin, stderr=log_file, env=env
            )
            zstd.stdin.close()
            codes = (strap.wait(timeout=1800), zstd.wait(timeout=600))
        if codes != (0, 0):
            raise DevError(f"bootstrap failed (mmdebstrap, zstd exited {codes}); see {log}")
        listing.rename(manifest_file(path))
        compressed.rename(path)
    finally:
        for leftover in (compressed, listing):
            leftover.unlink(missing_ok=True)
    size = path.stat().st_size / 2**20
    say(f"chroot tarball ready in {time.monotonic() - started:.1f} s ({size:.0f} MiB)")


def _stamp(config: DevConfig) -> Path:
    assert config.root is not None
    return config.root / _STAMP


def unpacked_from(config: DevConfig) -> str | None:
    """The tarball name this run dir's chroot was unpacked from (None: no chroot)."""
    try:
        return _stamp(config).read_text().strip()
    except OSError:
        return None


def ensure_root(config: DevConfig, source: Path) -> None:
    """Unpack ``source`` into the run dir, or replace a chroot unpacked from another tarball.

    A replaced chroot keeps its instance state (config, logs, a private cluster): only the
    packages change. The caller has stopped everything that ran in it.
    """
    root = config.root
    assert root is not None
    current = unpacked_from(config)
    if current == source.name:
        return
    staging = root.with_name(root.name + ".new")
    remove_tree(staging)
    staging.mkdir(parents=True)
    say(f"unpacking {source.name} into {root}")
    started = time.monotonic()
    run(
        ["tar", "--numeric-owner", "-xp", "--zstd", "-f", source, "-C", staging],
        stdout_path=config.log_dir / "unpack.log" if config.log_dir.is_dir() else None,
        timeout=600,
    )
    if current is not None or root.exists():
        say(f"replacing the chroot (was {current or 'incomplete'}); instance state is kept")
        release(config)
        state = config.state_dir
        if state.is_dir():
            target = staging / CHROOT_STATE_DIR.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            state.rename(target)
        remove_tree(root)
    (staging / _STAMP).write_text(source.name + "\n")
    (staging / _OWNER).write_text(f"{config.run_dir}\n")
    staging.rename(root)
    say(f"chroot unpacked in {time.monotonic() - started:.1f} s")


def attach(config: DevConfig) -> None:
    """Mount /proc in the chroot (zabbix_server and PostgreSQL read it)."""
    assert config.root is not None
    mount_proc(config.root / "proc")


def release(config: DevConfig, timeout: float = 30) -> None:
    """Unmount what `attach` mounted, once nothing runs in the chroot any more."""
    root = config.root
    assert root is not None
    if not root.exists():
        return
    deadline = time.monotonic() + timeout
    while (left := processes_rooted_at(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        raise DevError(f"processes still run in {root}: {left}; not unmounting its /proc")
    for mount_point in mounts_under(root):
        unmount(mount_point)


@contextlib.contextmanager
def attached(config: DevConfig) -> Iterator[Runtime]:
    """The chroot with /proc mounted for a few commands, unmounted again unless it was before."""
    assert config.root is not None
    was_mounted = bool(mounts_under(config.root / "proc"))
    attach(config)
    try:
        yield Runtime.of(config)
    finally:
        if not was_mounted:
            release(config)


def sweep_orphans(config: DevConfig) -> None:
    """Delete chroots whose run dir is gone (a checkout deleted without `purge`).

    Only those in which nothing runs and nothing is mounted; a still running orphan holds its
    ports, and `up` names it when it refuses them.
    """
    if not config.chroot_dir.is_dir():
        return
    for candidate in config.chroot_dir.iterdir():
        try:
            owner = Path((candidate / _OWNER).read_text().strip())
        except OSError:
            continue  # being unpacked, or not ours
        if owner.exists() or mounts_under(candidate) or processes_rooted_at(candidate):
            continue
        say(f"removing the chroot of {owner}, which no longer exists")
        remove_tree(candidate)
