"""Small OS helpers: commands, users, ports, processes and the run-dir lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

# libcurl (webhooks in zabbix_server) and PHP honour these; nothing here may go through a proxy.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


class DevError(RuntimeError):
    """A set-up step failed; the message says which and where to look."""


class Unsupported(DevError):
    """Zabbix cannot be set up on this machine at all (not Debian, no root and no sudo)."""


def say(message: str) -> None:
    sys.stderr.write(f"zabbix-dev: {message}\n")
    sys.stderr.flush()


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without proxy variables (any case), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    input_bytes: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    stdout_path: Path | None = None,
    cwd: Path | str = "/",
) -> subprocess.CompletedProcess[bytes]:
    """Run a command (never through a shell); on failure raise `DevError` with its output."""
    args = [str(a) for a in argv]
    out_file = stdout_path.open("ab") if stdout_path else None
    try:
        proc = subprocess.run(
            args,
            input=input_bytes,
            stdin=None if input_bytes is not None else subprocess.DEVNULL,
            stdout=out_file or subprocess.PIPE,
            stderr=subprocess.STDOUT if out_file else subprocess.PIPE,
            env=dict(env) if env is not None else clean_env(),
            timeout=timeout,
            check=False,
            cwd=cwd,  # "/" so that commands run as another user can always enter it
        )
    finally:
        if out_file:
            out_file.close()
    if check and proc.returncode != 0:
        detail = (proc.stderr or b"").decode(errors="replace").strip()
        if stdout_path:
            detail = f"see {stdout_path}"
        raise DevError(f"{' '.join(args)} exited {proc.returncode}: {detail[-2000:]}")
    return proc


def is_root() -> bool:
    return os.geteuid() == 0


def have_sudo() -> bool:
    if not shutil.which("sudo"):
        return False
    return run(["sudo", "-n", "true"], check=False, timeout=10).returncode == 0


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def as_user(user: str | None, argv: Sequence[str | Path]) -> list[str | Path]:
    """``argv`` run as ``user`` (``None``: as ourselves)."""
    if user is None or user == pwd.getpwuid(os.geteuid()).pw_name:
        return list(argv)
    if is_root():
        return ["runuser", "-u", user, "--", *argv]
    return ["sudo", "-n", "-u", user, "--", *argv]


def check_access(user: str | None, path: Path, what: str) -> None:
    """Fail early and clearly if ``user`` cannot use ``path`` (``what``: "r" or "w").

    A run dir under a private home (mode 700) is the usual cause: the services run as
    ``zabbix``, ``www-data`` and ``postgres`` and must reach it.
    """
    if user is None or not is_root():
        return
    if run(as_user(user, ["test", f"-{what}", path]), check=False).returncode != 0:
        verb = "write" if what == "w" else "read"
        raise DevError(
            f"user {user} cannot {verb} {path} (is a parent directory private?); "
            "set ZBX_DEV_RUN_DIR to a directory it can reach, e.g. /var/tmp/yobidashi-zabbix"
        )


def chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something listens on ``port`` (on any address of this network namespace).

    Read from the kernel's socket tables rather than by connecting: on a loaded machine a
    connect can time out, and then a busy PostgreSQL looked absent (a private cluster was
    chosen) or a foreign instance's port looked free.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if any(t.exists() for t in tables):
        return bool(_listening_inodes(port))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(
    pid: int | None, expect_in_cmdline: str | None = None, *, root: Path | None = None
) -> bool:
    """True if ``pid`` runs and is not a zombie (zombies linger a moment under this VM's init).

    ``expect_in_cmdline`` guards against a recycled PID that now belongs to something else;
    ``root`` additionally requires the process to run in that chroot (another checkout's
    instance runs the same program in a chroot of its own).
    """
    if not pid or pid <= 0:
        return False
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        return False
    if root is not None and process_root(pid) != Path(os.path.realpath(root)):
        return False
    return expect_in_cmdline is None or expect_in_cmdline in cmdline


def process_root(pid: int) -> Path | None:
    """The root directory a process sees (``/`` unless chrooted); None if unreadable."""
    try:
        return Path(os.readlink(f"/proc/{pid}/root"))
    except OSError:
        return None


def processes_rooted_at(root: Path) -> list[int]:
    """Live (non-zombie) processes whose root directory is ``root``."""
    wanted = Path(os.path.realpath(root))
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if process_root(pid) == wanted and alive(pid)]


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def port_owner(port: int) -> str:
    """Who listens on ``port``, for error messages: PID, command line and chroot if any."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if inodes:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
                if not links & inodes:
                    continue
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            where = process_root(int(proc.name))
            chrooted = f" in chroot {where}" if where and where != Path("/") else ""
            return f"pid {proc.name} ({cmdline[:160]}){chrooted}"
    return "a process that could not be identified (gone meanwhile, or not visible to this user)"


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp.
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(proc.name))
    return members


def terminate_group(pgid: int, timeout: float) -> None:
    """SIGTERM a process group, SIGKILL what is left after ``timeout``.

    Returns once the whole group is gone: PHP's workers outlive their parent for a moment, and
    until they exit they still hold the listening socket.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


_LAUNCHER = """
import json, subprocess, sys
spec = json.loads(sys.argv[1])
log = open(spec["log"], "ab")
kwargs = {"user": spec["user"], "group": spec["user"], "extra_groups": []} if spec["user"] else {}
proc = subprocess.Popen(spec["argv"], env=spec["env"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
                        stdout=log, stderr=log, start_new_session=True, **kwargs)
print(proc.pid)
"""


def spawn_daemon(
    argv: Sequence[str | Path], *, env: Mapping[str, str], cwd: Path, log: Path, user: str | None
) -> int:
    """Start ``argv`` detached: own session (setsid, so pgid == pid), reparented to init.

    A throw-away launcher process starts it and exits, so the caller (often a long pytest
    session) never becomes the parent of a daemon it later kills and would have to reap.
    """
    spec = {
        "argv": [str(a) for a in argv],
        "env": dict(env),
        "cwd": str(cwd),
        "log": str(log),
        "user": user,
    }
    proc = run([sys.executable, "-c", _LAUNCHER, json.dumps(spec)], timeout=30)
    return int(proc.stdout.decode().strip())


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Serialise set-up steps between processes (two pytest sessions, a shell and a test)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
