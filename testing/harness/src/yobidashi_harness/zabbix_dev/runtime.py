"""Where an instance's programs run: on this machine, or in its chroot.

The steps of bringing Zabbix up (PostgreSQL, zabbix_server, PHP) are the same for every version;
what differs is how a command is started and how a path looks to it. A chroot command runs as
``chroot [--userspec=U:G] ROOT /usr/bin/env -i VARS… argv``: nothing of this process's
environment leaks in, and the users are the chroot's own (its ``zabbix`` is not ours).
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import DevConfig
from .system import DevError, as_user, clean_env, run

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def _read_passwd(path: Path) -> dict[str, Account]:
    accounts = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
            accounts[fields[0]] = Account(fields[0], int(fields[2]), int(fields[3]))
    return accounts


@dataclass(frozen=True)
class Command:
    """An argv and the environment to start it with (``subprocess``'s ``env``)."""

    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Runtime:
    root: Path | None  # None: this machine

    @classmethod
    def of(cls, config: DevConfig) -> Runtime:
        return cls(root=config.root)

    @property
    def etc(self) -> Path:
        return (self.root or Path("/")) / "etc"

    def inside(self, path: Path) -> str:
        """How a host path looks to the runtime's programs."""
        if self.root is None:
            return str(path)
        try:
            return "/" + str(path.relative_to(self.root))
        except ValueError:
            raise DevError(f"{path} is outside the chroot {self.root}") from None

    def outside(self, path: str | Path) -> Path:
        """The host path of a path as the runtime's programs see it."""
        if self.root is None:
            return Path(path)
        return self.root / Path(path).relative_to("/")

    def account(self, name: str) -> Account:
        found = _read_passwd(self.etc / "passwd").get(name)
        if found is None:
            raise DevError(f"no user {name!r} in {self.etc / 'passwd'}")
        return found

    def has_account(self, name: str) -> bool:
        return name in _read_passwd(self.etc / "passwd")

    def chown(self, path: Path, user: str) -> None:
        owner = self.account(user)
        os.chown(path, owner.uid, owner.gid)

    def command(
        self,
        argv: Sequence[str | Path],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Command:
        """``argv`` (already in the runtime's paths) run as ``user`` with ``env`` added."""
        args = [str(a) for a in argv]
        extra = dict(env or {})
        if self.root is None:
            return Command([str(a) for a in as_user(user, args)], clean_env(extra))
        prefix = ["chroot"]
        if user is not None:
            account = self.account(user)
            prefix += [f"--userspec={account.uid}:{account.gid}", f"--groups={account.gid}"]
        variables = {"PATH": CHROOT_PATH, "LANG": "C.UTF-8", **extra}
        pairs = [f"{key}={value}" for key, value in variables.items()]
        return Command([*prefix, str(self.root), "/usr/bin/env", "-i", *pairs, *args], clean_env())

    def daemon_command(
        self, argv: Sequence[str | Path], *, user: str | None, env: Mapping[str, str]
    ) -> tuple[Command, str | None]:
        """Like `command`, for a detached daemon whose PID must be the program's own.

        ``runuser`` forks and waits, so on the host the user switch is left to the launcher
        (the second value); ``chroot --userspec`` and ``env`` exec, keeping the PID.
        """
        if self.root is None:
            return Command([str(a) for a in argv], clean_env(dict(env))), user
        return self.command(argv, user=user, env=env), None

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        input_bytes: bytes | None = None,
        timeout: float = 300,
        stdout_path: Path | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """`system.run` of ``argv`` in this runtime."""
        command = self.command(argv, user=user, env=env)
        return run(
            command.argv,
            env=command.env,
            check=check,
            input_bytes=input_bytes,
            timeout=timeout,
            stdout_path=stdout_path,
        )

    def postgres_bindir(self) -> Path | None:
        """The newest PostgreSQL server's bin dir, as the runtime sees it."""
        base = self.outside("/usr/lib/postgresql")
        found = [Path(p).parent for p in glob.glob(f"{base}/*/bin/initdb")]
        if not found:
            return None
        newest = max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        return Path(self.inside(newest)) if self.root else newest

    def package_version(self, package: str) -> str | None:
        """The installed version of a Debian package in this runtime (None: not installed)."""
        admindir = self.outside("/var/lib/dpkg")
        proc = run(
            [
                "dpkg-query",
                f"--admindir={admindir}",
                "-W",
                "-f=${Status}\\t${Version}",
                package,
            ],
            check=False,
            timeout=30,
        )
        status, _, version = proc.stdout.decode().partition("\t")
        return version.strip() if status == "install ok installed" else None
