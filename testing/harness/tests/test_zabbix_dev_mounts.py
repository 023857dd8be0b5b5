"""Deleting a run dir never follows a mount point."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from yobidashi_harness.zabbix_dev.mounts import mount_points, mounts_under, remove_tree
from yobidashi_harness.zabbix_dev.system import DevError

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
46 27 0:40 / /work/a\\040b/root/proc rw,relatime - proc proc rw
47 27 0:41 / /work/a\\040b/root/proc/sys rw - sysfs sysfs rw
48 27 0:42 / /work/a\\040bc rw - tmpfs tmpfs rw
"""


def test_mount_points_are_unescaped_and_listed_deepest_first() -> None:
    assert Path("/work/a b/root/proc") in mount_points(MOUNTINFO)
    assert mounts_under(Path("/work/a b"), MOUNTINFO) == [
        Path("/work/a b/root/proc/sys"),
        Path("/work/a b/root/proc"),
    ]
    assert mounts_under(Path("/elsewhere"), MOUNTINFO) == []


@pytest.fixture
def mounted_tree(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    tree = tmp_path / "run"
    inner = tree / "root" / "proc"
    inner.mkdir(parents=True)
    (tree / "keep-me").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)
    (inner / "someone-elses-file").write_text("must survive")
    try:
        yield tree
    finally:
        subprocess.run(["umount", str(inner)], check=False)


def test_remove_tree_refuses_while_something_is_mounted_below(mounted_tree: Path) -> None:
    with pytest.raises(DevError, match=r"still mounted below it: .*root/proc"):
        remove_tree(mounted_tree)
    assert (mounted_tree / "keep-me").exists()
    assert (mounted_tree / "root/proc/someone-elses-file").read_text() == "must survive"


def test_remove_tree_deletes_once_unmounted(
    mounted_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run(["umount", str(mounted_tree / "root/proc")], check=True)
    # A relative path is relative to the caller's directory (commands run from "/").
    monkeypatch.chdir(mounted_tree.parent)
    remove_tree(Path(mounted_tree.name))
    assert not mounted_tree.exists()
