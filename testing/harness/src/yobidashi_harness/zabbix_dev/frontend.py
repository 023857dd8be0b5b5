"""The PHP frontend, served by ``php -S``.

Debian patches ``CConfigFile::CONFIG_FILE_PATH`` to ``/etc/zabbix/zabbix.conf.php``, so every
frontend on the machine would share one config (and one database). On this machine (6.0) a
private copy of /usr/share/zabbix changes that one line to point at its own
``conf/zabbix.conf.php``; nothing is written to the machine's ``/etc/zabbix``. A chroot has an
``/etc/zabbix`` of its own, so there the package's frontend is served as it is.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from pathlib import Path

from . import postgres
from .config import DevConfig
from .runtime import Runtime
from .system import (
    DevError,
    alive,
    check_access,
    is_root,
    port_open,
    port_owner,
    read_pid,
    run,
    say,
    spawn_daemon,
    terminate_group,
    user_exists,
)

SOURCE = Path("/usr/share/zabbix")  # as the runtime sees it
CONFIG_CLASS = Path("include/classes/core/CConfigFile.php")
DEBIAN_CONF_LINE = "const CONFIG_FILE_PATH = '/etc/zabbix/zabbix.conf.php';"
PHP_USER = "www-data"
PHP_WORKERS = "4"  # the built-in server is single-threaded without this
# Bump when the way the copy is made changes, so old copies get rebuilt.
COPY_REVISION = "1"


def _package_version() -> str:
    proc = run(["dpkg-query", "-W", "-f=${Version}", "zabbix-frontend-php"], check=False)
    return proc.stdout.decode().strip() or "unknown"


def _stamp_file(config: DevConfig) -> Path:
    return config.frontend_dir / ".yobidashi-copy"


def _copy(config: DevConfig, stamp: str) -> None:
    say(f"copying {SOURCE} to {config.frontend_dir}")
    staging = config.frontend_dir.with_name("frontend.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(SOURCE, staging, symlinks=True)
    # Relative links (the DejaVu fonts, COPYING) would dangle in the copy: re-point them.
    for link in [p for p in staging.rglob("*") if p.is_symlink()]:
        target = os.readlink(link)
        if not os.path.isabs(target):
            original = SOURCE / link.relative_to(staging)
            link.unlink()
            link.symlink_to(os.path.normpath(original.parent / target))
    config_class = staging / CONFIG_CLASS
    text = config_class.read_text()
    if DEBIAN_CONF_LINE not in text:
        raise DevError(f"{SOURCE / CONFIG_CLASS} has no Debian config path line to replace")
    own_line = f"const CONFIG_FILE_PATH = '{config.frontend_conf}';"
    config_class.write_text(text.replace(DEBIAN_CONF_LINE, own_line))
    (staging / _stamp_file(config).name).write_text(stamp)
    shutil.rmtree(config.frontend_dir, ignore_errors=True)
    staging.rename(config.frontend_dir)


def render_conf(config: DevConfig) -> str:
    def php(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return f"""<?php
// Written by yobidashi zabbix-dev; rewritten on every `up`.
$DB['TYPE'] = 'POSTGRESQL';
$DB['SERVER'] = '127.0.0.1';
$DB['PORT'] = '{postgres.db_port(config)}';
$DB['DATABASE'] = {php(config.db_name)};
$DB['USER'] = {php(config.db_user)};
$DB['PASSWORD'] = {php(config.db_password)};
$DB['SCHEMA'] = '';
$DB['ENCRYPTION'] = false;
$DB['KEY_FILE'] = '';
$DB['CERT_FILE'] = '';
$DB['CA_FILE'] = '';
$DB['VERIFY_HOST'] = false;
$DB['CIPHER_LIST'] = '';
$DB['VAULT_URL'] = '';
$DB['VAULT_DB_PATH'] = '';
$DB['VAULT_TOKEN'] = '';
$DB['DOUBLE_IEEE754'] = true;
$ZBX_SERVER = '127.0.0.1';
$ZBX_SERVER_PORT = '{config.server_port}';
$ZBX_SERVER_NAME = 'yobidashi-dev';
$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
"""


def docroot(config: DevConfig) -> Path:
    """The frontend directory as PHP sees it."""
    return SOURCE if config.in_chroot else config.frontend_dir


def ensure_copy(config: DevConfig) -> None:
    """Make the frontend servable: the private copy (6.0) and the config file."""
    rt = Runtime.of(config)
    if not config.in_chroot:
        stamp = f"{_package_version()} rev {COPY_REVISION} conf {config.frontend_conf}"
        try:
            current = _stamp_file(config).read_text()
        except OSError:
            current = ""
        if current != stamp:
            _copy(config, stamp)
    conf = config.frontend_conf
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists() or conf.read_text() != render_conf(config):
        conf.write_text(render_conf(config))
    conf.chmod(0o640)
    if not is_root():
        return
    if config.in_chroot:
        os.chown(conf, 0, rt.account(PHP_USER).gid)
        if rt.run(["test", "-r", rt.inside(conf)], user=PHP_USER, check=False).returncode != 0:
            raise DevError(f"{PHP_USER} cannot read {conf}")
    elif user_exists(PHP_USER):
        os.chown(conf, 0, pwd.getpwnam(PHP_USER).pw_gid)
        check_access(PHP_USER, conf, "r")


def _argv(config: DevConfig) -> list[str]:
    php = "/usr/bin/php" if config.in_chroot else (shutil.which("php") or "/usr/bin/php")
    settings = {
        "post_max_size": "16M",
        "max_execution_time": "300",
        "max_input_time": "300",
        "memory_limit": "256M",
        "date.timezone": config.tz,
        "session.auto_start": "0",
        # -q silences the built-in server's own error log as well as its request lines; this
        # sends PHP's errors (Zabbix's E_USER_DEPRECATED API notices too) to php.log again.
        "error_log": "/dev/stderr",
    }
    # -q: no line per request in the log.
    argv = [php, "-q", "-S", f"127.0.0.1:{config.web_port}", "-t", str(docroot(config))]
    for key, value in settings.items():
        argv += ["-d", f"{key}={value}"]
    return argv


def _cmd_file(config: DevConfig) -> Path:
    return config.run_dir / "php.cmd"


def php_pid(config: DevConfig) -> int | None:
    pid = read_pid(config.php_pid_file)
    return pid if alive(pid, "php", root=config.root) else None


def running(config: DevConfig) -> bool:
    return php_pid(config) is not None


def current(config: DevConfig) -> bool:
    """Whether a running PHP was started with today's command line and config file."""
    try:
        started_with = _cmd_file(config).read_text()
        conf = config.frontend_conf.read_text()
    except OSError:
        return False
    return started_with == json.dumps(_argv(config)) and conf == render_conf(config)


def start(config: DevConfig) -> None:
    """Serve the frontend (restart when the command line changed). The caller ensures the copy."""
    if running(config):
        if current(config):
            return
        stop(config)
    if port_open(config.web_port):
        raise DevError(
            f"127.0.0.1:{config.web_port} is taken by {port_owner(config.web_port)}; "
            f"set {config.setting_name('WEB_PORT')}"
        )
    config.log_dir.mkdir(parents=True, exist_ok=True)
    rt = Runtime.of(config)
    has_user = rt.has_account(PHP_USER) if config.in_chroot else user_exists(PHP_USER)
    php_user = PHP_USER if is_root() and has_user else None
    config.php_log.touch()
    if php_user is not None:
        # PHP reopens /dev/stderr (its error_log) as itself: the log must be its own.
        rt.chown(config.php_log, php_user)
    command, launcher_user = rt.daemon_command(
        _argv(config),
        user=php_user,
        env={"PHP_CLI_SERVER_WORKERS": PHP_WORKERS, "TZ": config.tz},
    )
    pid = spawn_daemon(
        command.argv,
        env=command.env,
        cwd=config.frontend_dir if not config.in_chroot else Path("/"),
        log=config.php_log,
        user=launcher_user,
    )
    config.php_pid_file.write_text(f"{pid}\n")
    _cmd_file(config).write_text(json.dumps(_argv(config)))
    say(f"frontend: php -S 127.0.0.1:{config.web_port} (pid {pid})")


def stop(config: DevConfig) -> None:
    pid = php_pid(config)
    if pid is not None:
        say(f"stopping the frontend (pid {pid})")
        # setsid made pgid == pid: the group signal reaches the workers too.
        terminate_group(pid, 10)
    config.php_pid_file.unlink(missing_ok=True)
