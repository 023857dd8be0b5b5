"""PostgreSQL: reuse one already listening on 127.0.0.1:$port, else a private cluster.

The private cluster lives in ``<run dir>/pgdata`` and never touches ``/etc/postgresql`` or the
system ``main`` cluster. Either way the Zabbix database is owned by its own role (PG 15 no longer
lets everyone create objects in ``public``, so a non-owner import fails).
"""

from __future__ import annotations

import gzip
import pwd
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .config import DevConfig
from .install import postgres_server_bindir
from .system import (
    DevError,
    alive,
    as_user,
    check_access,
    chown,
    clean_env,
    is_root,
    port_open,
    read_pid,
    run,
    say,
    user_exists,
)

SCHEMA_DIR = Path("/usr/share/zabbix-server-pgsql")
SCHEMA_FILES = ("schema.sql.gz", "images.sql.gz", "data.sql.gz")
# -X: ignore ~/.psqlrc; -w: never prompt for a password; -At: bare values.
_PSQL_FLAGS = ("-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1")


@dataclass(frozen=True)
class Superuser:
    """How to run psql as a PostgreSQL superuser on the chosen cluster."""

    argv: tuple[str, ...]

    def sql(self, statement: str, db: str = "postgres", check: bool = True) -> str:
        proc = run(
            [*self.argv, *_PSQL_FLAGS, "-d", db, "-c", statement],
            env=clean_env({"PGCONNECT_TIMEOUT": "5"}),
            check=check,
            timeout=120,
        )
        return proc.stdout.decode().strip()


def private_exists(config: DevConfig) -> bool:
    return (config.pg_data / "PG_VERSION").is_file()


def _cluster_owner() -> str | None:
    """initdb refuses to run as root, so a root caller runs the cluster as a system user."""
    if not is_root():
        return None
    for user in ("postgres", "zabbix"):
        if user_exists(user):
            return user
    raise DevError("no 'postgres' or 'zabbix' user to own the private PostgreSQL cluster")


def _owner_of(path: Path) -> str | None:
    return pwd.getpwuid(path.stat().st_uid).pw_name if is_root() else None


def _bindir() -> Path:
    bindir = postgres_server_bindir()
    if bindir is None:
        raise DevError("no PostgreSQL server binaries (initdb); run `zabbix-dev install`")
    return bindir


def _init_private(config: DevConfig) -> None:
    owner = _cluster_owner()
    say(f"creating a private PostgreSQL cluster in {config.pg_data} (port {config.pg_port})")
    for directory in (config.pg_data, config.pg_socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
        if owner:
            chown(directory, owner)
    config.pg_data.chmod(0o700)
    check_access(owner, config.pg_data, "w")
    initdb: list[str | Path] = [
        _bindir() / "initdb",
        "-D",
        config.pg_data,
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    ]
    run(as_user(owner, initdb), stdout_path=config.log_dir / "initdb.log", timeout=300)
    # Settings go into the cluster's own config so a plain `pg_ctl start` is enough later.
    # fsync off: a throw-away dev cluster, and it makes the schema import much faster.
    extra = (
        "\n# yobidashi zabbix-dev\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {config.pg_port}\n"
        f"unix_socket_directories = '{config.pg_socket_dir}'\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
    )
    with (config.pg_data / "postgresql.conf").open("a") as conf:
        conf.write(extra)


def _start_private(config: DevConfig) -> None:
    if port_open(config.pg_port):
        raise DevError(
            f"127.0.0.1:{config.pg_port} is taken by another server, but {config.pg_data} "
            "holds this instance's private cluster; stop that server or set ZBX_DEV_PG_PORT"
        )
    config.pg_log.touch()
    owner = _owner_of(config.pg_data)
    if owner:
        chown(config.pg_log, owner)
    ctl: list[str | Path] = [_bindir() / "pg_ctl", "-D", config.pg_data, "-l", config.pg_log]
    ctl += ["-w", "-t", "60"]
    run(as_user(owner, [*ctl, "start"]), stdout_path=config.log_dir / "pg_ctl.log", timeout=90)


def stop_private(config: DevConfig) -> None:
    if not private_exists(config) or not (config.pg_data / "postmaster.pid").exists():
        return
    owner = _owner_of(config.pg_data)
    ctl: list[str | Path] = [_bindir() / "pg_ctl", "-D", config.pg_data, "-m", "fast"]
    ctl += ["-w", "-t", "60", "stop"]
    run(as_user(owner, ctl), stdout_path=config.log_dir / "pg_ctl.log", check=False, timeout=90)


def _private_superuser(config: DevConfig) -> Superuser:
    return Superuser(argv=("psql", "-h", "127.0.0.1", "-p", str(config.pg_port), "-U", "postgres"))


def _find_superuser(config: DevConfig) -> Superuser:
    """Trust over TCP first (dev machines), then peer auth as ``postgres`` (Debian's default)."""
    port = str(config.pg_port)
    candidates: list[tuple[str, ...]] = [("psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres")]
    if user_exists("postgres"):
        candidates.append(tuple(str(a) for a in as_user("postgres", ["psql", "-p", port])))
    for argv in candidates:
        access = Superuser(argv=argv)
        try:
            if access.sql("SELECT 1") == "1":
                return access
        except DevError:
            continue
    raise DevError(
        f"a PostgreSQL server listens on 127.0.0.1:{config.pg_port} but neither "
        f"`psql -h 127.0.0.1 -U postgres` (trust) nor `psql` as the postgres user (peer) "
        "gets in; set ZBX_DEV_PG_PORT to a free port to use a private cluster instead"
    )


def private_running(config: DevConfig) -> bool:
    """Our postmaster runs (not merely: something listens on the port)."""
    return alive(read_pid(config.pg_data / "postmaster.pid"), "postgres")


def ensure_running(config: DevConfig) -> Superuser:
    """Make sure the cluster for this instance runs; return superuser access to it."""
    if private_exists(config) or not port_open(config.pg_port):
        if not private_exists(config):
            _init_private(config)
        if not private_running(config):
            _start_private(config)
        return _private_superuser(config)
    return _find_superuser(config)


def superuser_if_reachable(config: DevConfig) -> Superuser | None:
    """Superuser access without starting anything (for purge and status)."""
    if private_exists(config):
        return _private_superuser(config) if private_running(config) else None
    if not port_open(config.pg_port):
        return None
    try:
        return _find_superuser(config)
    except DevError:
        return None


def _role_psql(config: DevConfig) -> list[str]:
    return ["psql", "-h", "127.0.0.1", "-p", str(config.pg_port), "-U", config.db_user]


def _role_env(config: DevConfig) -> dict[str, str]:
    return clean_env({"PGPASSWORD": config.db_password, "PGCONNECT_TIMEOUT": "5"})


def role_sql(config: DevConfig, statement: str, check: bool = True) -> str:
    proc = run(
        [*_role_psql(config), *_PSQL_FLAGS, "-d", config.db_name, "-c", statement],
        env=_role_env(config),
        check=check,
        timeout=120,
    )
    return proc.stdout.decode().strip()


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ensure_role_and_db(config: DevConfig, su: Superuser) -> None:
    role, db = config.db_user, config.db_name  # validated identifiers (config._ident)
    exists = su.sql(f"SELECT 1 FROM pg_roles WHERE rolname = {_quote(role)}")  # noqa: S608
    verb = "ALTER" if exists == "1" else "CREATE"
    # Always (re)set the password: a changed ZBX_DEV_DB_PASSWORD takes effect on the next `up`.
    su.sql(f"{verb} ROLE {role} LOGIN PASSWORD {_quote(config.db_password)}")
    if su.sql(f"SELECT 1 FROM pg_database WHERE datname = {_quote(db)}") != "1":  # noqa: S608
        say(f"creating database {db}")
        su.sql(f"CREATE DATABASE {db} OWNER {role} ENCODING 'UTF8' TEMPLATE template0")


def is_imported(config: DevConfig) -> bool:
    """``data.sql`` is one transaction that creates Admin: its row marks a complete import."""
    proc = run(
        [
            *_role_psql(config),
            *_PSQL_FLAGS,
            "-d",
            config.db_name,
            "-c",
            "SELECT 1 FROM users WHERE username = 'Admin'",
        ],
        env=_role_env(config),
        check=False,
        timeout=60,
    )
    return proc.returncode == 0 and proc.stdout.decode().strip() == "1"


def _has_tables(config: DevConfig) -> bool:
    count = role_sql(config, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    return count not in ("", "0")


def drop_db(config: DevConfig, su: Superuser, *, drop_role: bool) -> None:
    su.sql(f"DROP DATABASE IF EXISTS {config.db_name} WITH (FORCE)")
    if drop_role:
        su.sql(f"DROP ROLE IF EXISTS {config.db_user}")


def import_schema(config: DevConfig, su: Superuser) -> None:
    """Schema, images and data, as README.Debian says, fed to psql as the owning role."""
    if _has_tables(config):
        say("database is half-imported: dropping and importing again")
        drop_db(config, su, drop_role=False)
        ensure_role_and_db(config, su)
    paths = [SCHEMA_DIR / name for name in SCHEMA_FILES]
    for path in paths:
        if not path.is_file():
            raise DevError(f"{path} is missing; is zabbix-server-pgsql installed?")
    say("importing the Zabbix schema (takes 10-20 s)")
    started = time.monotonic()
    sql = b"".join(gzip.decompress(path.read_bytes()) for path in paths)
    env = {**_role_env(config), "PGOPTIONS": "-c synchronous_commit=off"}
    run(
        [*_role_psql(config), "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", config.db_name],
        input_bytes=sql,
        env=env,
        timeout=900,
        stdout_path=config.log_dir / "schema-import.log",
    )
    say(f"schema imported in {time.monotonic() - started:.1f} s")


def disable_stock_host(config: DevConfig) -> None:
    """The stock "Zabbix server" host polls an agent that does not exist and raises problems."""
    role_sql(config, "UPDATE hosts SET status = 1 WHERE host = 'Zabbix server' AND status = 0")


def ensure_database(config: DevConfig) -> Superuser:
    su = ensure_running(config)
    ensure_role_and_db(config, su)
    if not is_imported(config):
        import_schema(config, su)
        if not is_imported(config):
            raise DevError(f"schema import left no Admin user; see {config.log_dir}")
    disable_stock_host(config)
    return su


def purge(config: DevConfig) -> None:
    """Drop the database (shared cluster) or stop the private cluster; the caller removes files."""
    if private_exists(config):
        stop_private(config)
        shutil.rmtree(config.pg_data, ignore_errors=True)
        shutil.rmtree(config.pg_socket_dir, ignore_errors=True)
        return
    su = superuser_if_reachable(config)
    if su is None:
        say(f"no PostgreSQL reachable on 127.0.0.1:{config.pg_port}; database left as is")
        return
    say(f"dropping database {config.db_name} and role {config.db_user}")
    drop_db(config, su, drop_role=True)


def describe(config: DevConfig) -> str:
    if private_exists(config):
        state = "running" if private_running(config) else "stopped"
        return f"private cluster {config.pg_data} on 127.0.0.1:{config.pg_port} ({state})"
    state = "listening" if port_open(config.pg_port) else "not listening"
    return f"shared server on 127.0.0.1:{config.pg_port} ({state})"
