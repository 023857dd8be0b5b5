"""PostgreSQL: reuse one already listening on 127.0.0.1:$pg_port, else a private cluster.

The private cluster lives in the instance's state dir (``<run dir>/pgdata``, or inside the
chroot) and listens on its own port (``private_pg_port``), never on the shared one: another
instance must not mistake it for the machine's PostgreSQL and come to depend on it. It never
touches ``/etc/postgresql`` or the system ``main`` cluster. Either way the Zabbix database is
owned by its own role (PG 15 no longer lets everyone create objects in ``public``, so a
non-owner import fails).

A chroot version runs every PostgreSQL program (psql, initdb, the server) from its chroot.
"""

from __future__ import annotations

import gzip
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .config import DevConfig
from .runtime import Runtime
from .system import (
    DevError,
    alive,
    as_user,
    clean_env,
    is_root,
    port_open,
    port_owner,
    read_pid,
    run,
    say,
)

SCHEMA_DIR = "/usr/share/zabbix-server-pgsql"
SCHEMA_FILES = ("schema.sql.gz", "images.sql.gz", "data.sql.gz")
# -X: ignore ~/.psqlrc; -w: never prompt for a password; -At: bare values.
_PSQL_FLAGS = ("-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1")
_MARKER = "# yobidashi zabbix-dev"


@dataclass(frozen=True)
class Superuser:
    """How to run psql as a PostgreSQL superuser on the chosen cluster."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def sql(self, statement: str, db: str = "postgres", check: bool = True) -> str:
        proc = run(
            [*self.argv, *_PSQL_FLAGS, "-d", db, "-c", statement],
            env=clean_env(dict(self.env)),
            check=check,
            timeout=120,
        )
        return proc.stdout.decode().strip()


def _psql(rt: Runtime, port: int, user: str, env: dict[str, str]) -> Superuser:
    """psql over TCP in the runtime; chroot variables must go inside its ``env -i``."""
    env = {"PGCONNECT_TIMEOUT": "5", **env}
    command = rt.command(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", user], env=env)
    return Superuser(argv=tuple(command.argv), env=tuple(env.items()))


def private_exists(config: DevConfig) -> bool:
    return (config.pg_data / "PG_VERSION").is_file()


def uses_private(config: DevConfig) -> bool:
    """A private cluster, once created, stays this instance's database server."""
    return private_exists(config) or not port_open(config.pg_port)


def db_port(config: DevConfig) -> int:
    """The port zabbix_server and the frontend connect to."""
    return config.private_pg_port if uses_private(config) else config.pg_port


def _cluster_owner(rt: Runtime) -> str | None:
    """initdb refuses to run as root, so a root caller runs the cluster as a system user."""
    if not is_root():
        return None
    for user in ("postgres", "zabbix"):
        if rt.has_account(user):
            return user
    raise DevError("no 'postgres' or 'zabbix' user to own the private PostgreSQL cluster")


def _owner_of(rt: Runtime, path: Path) -> str | None:
    if not is_root():
        return None
    uid = path.stat().st_uid
    for name in ("postgres", "zabbix"):
        if rt.has_account(name) and rt.account(name).uid == uid:
            return name
    return None


def _bindir(rt: Runtime) -> Path:
    bindir = rt.postgres_bindir()
    if bindir is None:
        raise DevError("no PostgreSQL server binaries (initdb); run `zabbix-dev install`")
    return bindir


def _check_writable(rt: Runtime, user: str | None, path: Path) -> None:
    if user is None:
        return
    if rt.run(["test", "-w", rt.inside(path)], user=user, check=False).returncode != 0:
        raise DevError(
            f"user {user} cannot write {path} (is a parent directory private?); "
            "set ZBX_DEV_RUN_DIR to a directory it can reach, e.g. /var/tmp/yobidashi-zabbix"
        )


def _init_private(config: DevConfig, rt: Runtime) -> None:
    owner = _cluster_owner(rt)
    say(f"creating a private PostgreSQL cluster in {config.pg_data}")
    for directory in (config.pg_data, config.pg_socket_dir, config.server_log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for directory in (config.pg_data, config.pg_socket_dir):
        if owner:
            rt.chown(directory, owner)
    config.pg_data.chmod(0o700)
    _check_writable(rt, owner, config.pg_data)
    initdb = [
        str(_bindir(rt) / "initdb"),
        "-D",
        rt.inside(config.pg_data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    ]
    rt.run(initdb, user=owner, stdout_path=config.log_dir / "initdb.log", timeout=300)
    # Settings go into the cluster's own config so a plain `pg_ctl start` is enough later; the
    # port is given on the command line (older clusters have a `port` line here).
    # fsync off: a throw-away dev cluster, and it makes the schema import much faster.
    extra = (
        f"\n{_MARKER}\n"
        "listen_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{rt.inside(config.pg_socket_dir)}'\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
    )
    if rt.root is not None:
        # A chroot's /dev/shm is a plain directory, not a tmpfs.
        extra += "dynamic_shared_memory_type = mmap\n"
    with (config.pg_data / "postgresql.conf").open("a") as conf:
        conf.write(extra)


def _pg_ctl(config: DevConfig, rt: Runtime, *args: str) -> list[str]:
    return [str(_bindir(rt) / "pg_ctl"), "-D", rt.inside(config.pg_data), *args]


def _start_private(config: DevConfig, rt: Runtime) -> None:
    port = config.private_pg_port
    if port_open(port):
        raise DevError(
            f"127.0.0.1:{port} is taken by {port_owner(port)}, but {config.pg_data} holds "
            f"this instance's private cluster; set {config.setting_name('PRIVATE_PG_PORT')}"
        )
    config.pg_log.parent.mkdir(parents=True, exist_ok=True)
    config.pg_log.touch()
    owner = _owner_of(rt, config.pg_data)
    if owner:
        rt.chown(config.pg_log, owner)
    start = _pg_ctl(config, rt, "-l", rt.inside(config.pg_log), "-o", f"-p {port}", "-w")
    rt.run(
        [*start, "-t", "60", "start"],
        user=owner,
        stdout_path=config.log_dir / "pg_ctl.log",
        timeout=90,
    )


def stop_private(config: DevConfig) -> None:
    if not private_exists(config) or not private_running(config):
        return
    rt = Runtime.of(config)
    stop = _pg_ctl(config, rt, "-m", "fast", "-w", "-t", "60", "stop")
    rt.run(
        stop,
        user=_owner_of(rt, config.pg_data),
        stdout_path=config.log_dir / "pg_ctl.log",
        check=False,
        timeout=90,
    )


def _private_superuser(config: DevConfig, rt: Runtime) -> Superuser:
    return _psql(rt, config.private_pg_port, "postgres", {})


def _find_superuser(config: DevConfig, rt: Runtime) -> Superuser:
    """Trust over TCP first (dev machines), then peer auth as ``postgres`` (Debian's default)."""
    port = str(config.pg_port)
    candidates = [_psql(rt, config.pg_port, "postgres", {})]
    if rt.root is not None and shutil.which("psql"):
        candidates.append(_psql(Runtime(root=None), config.pg_port, "postgres", {}))
    # Peer auth needs the server's Unix socket, which only this machine's own psql reaches.
    host = Runtime(root=None)
    if host.has_account("postgres") and shutil.which("psql"):
        peer = tuple(str(a) for a in as_user("postgres", ["psql", "-p", port]))
        candidates.append(Superuser(argv=peer, env=(("PGCONNECT_TIMEOUT", "5"),)))
    for access in candidates:
        try:
            if access.sql("SELECT 1") == "1":
                return access
        except DevError:
            continue
    raise DevError(
        f"a PostgreSQL server listens on 127.0.0.1:{config.pg_port} but neither "
        f"`psql -h 127.0.0.1 -U postgres` (trust) nor `psql` as the postgres user (peer) "
        f"gets in; set {config.setting_name('PG_PORT')} to a free port to use a private "
        "cluster instead"
    )


def private_running(config: DevConfig) -> bool:
    """Our postmaster runs (not merely: something listens on the port)."""
    pid = read_pid(config.pg_data / "postmaster.pid")
    return alive(pid, "postgres", root=config.root)


def ensure_running(config: DevConfig) -> Superuser:
    """Make sure the cluster for this instance runs; return superuser access to it."""
    rt = Runtime.of(config)
    if uses_private(config):
        if not private_exists(config):
            _init_private(config, rt)
        if not private_running(config):
            _start_private(config, rt)
        return _private_superuser(config, rt)
    return _find_superuser(config, rt)


def superuser_if_reachable(config: DevConfig) -> Superuser | None:
    """Superuser access without starting anything (for purge and status)."""
    rt = Runtime.of(config)
    if private_exists(config):
        return _private_superuser(config, rt) if private_running(config) else None
    if not port_open(config.pg_port):
        return None
    try:
        return _find_superuser(config, rt)
    except DevError:
        return None


def _role_psql(config: DevConfig, **extra_env: str) -> Superuser:
    """psql as the instance's own role (not a superuser, despite the class's name)."""
    env = {"PGPASSWORD": config.db_password, **extra_env}
    return _psql(Runtime.of(config), db_port(config), config.db_user, env)


def role_sql(config: DevConfig, statement: str, check: bool = True) -> str:
    return _role_psql(config).sql(statement, db=config.db_name, check=check)


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
    try:
        found = role_sql(config, "SELECT 1 FROM users WHERE username = 'Admin'")
    except DevError:
        return False
    return found == "1"


def _has_tables(config: DevConfig) -> bool:
    count = role_sql(config, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    return count not in ("", "0")


def drop_db(config: DevConfig, su: Superuser, *, drop_role: bool) -> None:
    su.sql(f"DROP DATABASE IF EXISTS {config.db_name} WITH (FORCE)")
    if not drop_role:
        return
    # An instance that set only ZBX_DEV_DB_NAME shares the default role with another one.
    others = su.sql(
        "SELECT string_agg(datname, ', ') FROM pg_database "  # noqa: S608 (validated identifier)
        f"WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = {_quote(config.db_user)})"
    )
    if others:
        say(f"keeping role {config.db_user}: it also owns {others}")
        return
    su.sql(f"DROP ROLE IF EXISTS {config.db_user}")


def import_schema(config: DevConfig, su: Superuser) -> None:
    """Schema, images and data, as README.Debian says, fed to psql as the owning role."""
    rt = Runtime.of(config)
    if _has_tables(config):
        say("database is half-imported: dropping and importing again")
        drop_db(config, su, drop_role=False)
        ensure_role_and_db(config, su)
    paths = [rt.outside(SCHEMA_DIR) / name for name in SCHEMA_FILES]
    for path in paths:
        if not path.is_file():
            raise DevError(f"{path} is missing; is zabbix-server-pgsql installed?")
    say("importing the Zabbix schema (takes 5-20 s)")
    started = time.monotonic()
    sql = b"".join(gzip.decompress(path.read_bytes()) for path in paths)
    role = _role_psql(config, PGOPTIONS="-c synchronous_commit=off")
    run(
        [*role.argv, "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", config.db_name],
        input_bytes=sql,
        env=clean_env(dict(role.env)),
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


def check_unused(config: DevConfig, su: Superuser) -> None:
    """Refuse a database that something else is connected to (before our server starts).

    Two zabbix_servers on one database corrupt each other's state; the usual cause is another
    checkout's instance configured with the same database name.
    """
    sessions = su.sql(
        "SELECT count(*) FROM pg_stat_activity "  # noqa: S608 (validated identifier)
        f"WHERE datname = {_quote(config.db_name)} AND pid <> pg_backend_pid()"
    )
    if sessions not in ("", "0"):
        raise DevError(
            f"database {config.db_name} on 127.0.0.1:{db_port(config)} has {sessions} sessions "
            "from something else (another checkout's zabbix_server?); stop that instance or set "
            f"{config.setting_name('DB_NAME')} and {config.setting_name('DB_USER')}"
        )


# About what one zabbix_server of ours holds (7.0: 18, 6.0: 15), plus the frontend's requests.
CONNECTIONS_NEEDED = 20


def check_capacity(config: DevConfig, su: Superuser) -> None:
    """Refuse to start a server the database cannot take: it would come up half-connected.

    Every instance on a shared PostgreSQL holds its connections for good; when they run out,
    the API answers "Error connecting to database" and the server logs connection failures.
    """
    free = su.sql(
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
        " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
    )
    if free.lstrip("-").isdigit() and int(free) < CONNECTIONS_NEEDED:
        raise DevError(
            f"PostgreSQL on 127.0.0.1:{db_port(config)} has {free} free connections and a "
            f"Zabbix server needs about {CONNECTIONS_NEEDED}: stop an instance you do not need "
            "(zabbix-dev down <version>), or raise its max_connections"
        )


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
        return (
            f"private cluster {config.pg_data} on 127.0.0.1:{config.private_pg_port} ({state}), "
            f"database {config.db_name}"
        )
    state = "listening" if port_open(config.pg_port) else "not listening"
    return f"shared server on 127.0.0.1:{config.pg_port} ({state}), database {config.db_name}"
