"""Mount points under a directory, and deleting a directory without ever following a mount.

A chroot has /proc mounted in it while it runs. A recursive delete that walked into that mount
would try to delete the machine's /proc (or, with a bind mount, someone's real files), so
`remove_tree` refuses while anything is mounted below the tree, and deletes with
``rm --one-file-system`` so that a mount appearing meanwhile is still not crossed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .system import DevError, run, say

MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo in mountinfo.
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), field)


def mount_points(mountinfo: str | None = None) -> list[Path]:
    """Every mount point of this mount namespace (field 5 of /proc/self/mountinfo)."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    return [Path(_unescape(line.split()[4])) for line in text.splitlines() if line.strip()]


def mounts_under(directory: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them in)."""
    base = Path(os.path.realpath(directory))
    found = [p for p in mount_points(mountinfo) if p == base or base in p.parents]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mount_point(path: Path) -> bool:
    return Path(os.path.realpath(path)) in mount_points()


def mount_proc(target: Path) -> None:
    target = target.absolute()
    if is_mount_point(target):
        return
    target.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "proc", "proc", target], timeout=30)


def unmount(target: Path) -> None:
    """Unmount ``target`` (not lazily: a busy mount is an error worth seeing)."""
    target = target.absolute()
    if is_mount_point(target):
        run(["umount", target], timeout=30)


def remove_tree(directory: Path) -> None:
    """Delete ``directory`` and everything in it, refusing while anything is mounted below it."""
    directory = directory.absolute()  # commands run from "/"
    if not directory.exists() and not directory.is_symlink():
        return
    if directory.is_symlink() or not directory.is_dir():
        directory.unlink()
        return
    mounted = mounts_under(directory)
    if mounted:
        listed = ", ".join(str(p) for p in mounted)
        raise DevError(f"not deleting {directory}: still mounted below it: {listed}")
    say(f"removing {directory}")
    # --one-file-system: never descend into another file system, even one mounted meanwhile.
    run(["rm", "-rf", "--one-file-system", "--", directory], timeout=600)
