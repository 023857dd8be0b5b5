"""The 7.0 instance's chroot: what it mounts, what it refuses, what is in it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from pathlib import Path

import pytest

from yobidashi_harness.zabbix_dev import DevError, DevInstance, down, up
from yobidashi_harness.zabbix_dev import postgres as dev_postgres
from yobidashi_harness.zabbix_dev import server as dev_server
from yobidashi_harness.zabbix_dev.mounts import mounts_under
from yobidashi_harness.zabbix_dev.runtime import Runtime
from yobidashi_harness.zabbix_dev.system import processes_rooted_at
from yobidashi_testing.zabbix_fixtures import ZabbixInstances, every_zabbix_version

pytestmark = pytest.mark.zabbix


@pytest.fixture
def zabbix_70(zabbix_instance: ZabbixInstances) -> DevInstance:
    return zabbix_instance("7.0")


def test_down_unmounts_proc_and_stops_everything_in_the_chroot(zabbix_70: DevInstance) -> None:
    root = zabbix_70.config.root
    assert root is not None
    assert mounts_under(root) == [root / "proc"], "only /proc is mounted while it runs"
    assert processes_rooted_at(root), "zabbix_server and PHP run in the chroot"
    try:
        down(zabbix_70.config)
        assert mounts_under(root) == []
        assert processes_rooted_at(root) == []
    finally:
        again = up(zabbix_70.config)
    assert again == zabbix_70
    assert mounts_under(root) == [root / "proc"]


def test_a_stale_root_owned_socket_does_not_stop_the_next_start(zabbix_70: DevInstance) -> None:
    """7.0 refuses to start next to a service socket it cannot replace ("used by another
    process"), as one left by a server that ran as root; up removes such leftovers."""
    config = zabbix_70.config
    down(config)
    leftover = config.server_run_dir / "zabbix_server_service.sock"
    try:
        leftover.unlink(missing_ok=True)  # the server's own, which it leaves on every stop
        with contextlib.chdir(config.server_run_dir), socket.socket(socket.AF_UNIX) as stale:
            stale.bind(leftover.name)  # relative: the full path is too long for a socket
        leftover.chmod(0o600)
        assert leftover.stat().st_uid == os.geteuid() == 0
    finally:
        up(config)
    assert dev_server.running(config)
    assert leftover.stat().st_uid == Runtime.of(config).account("zabbix").uid


def test_up_refuses_ports_held_by_another_run_dirs_instance(
    zabbix_70: DevInstance, tmp_path: Path
) -> None:
    other = dataclasses.replace(zabbix_70.config, run_dir=tmp_path / "other-checkout")
    with pytest.raises(DevError) as refused:
        up(other)
    assert f"127.0.0.1:{zabbix_70.web_port} is taken by" in str(refused.value)
    assert f"in chroot {zabbix_70.config.root}" in str(refused.value)
    assert not other.run_dir.exists(), "nothing was set up for the refused instance"


def test_a_database_another_server_uses_is_refused(zabbix_70: DevInstance) -> None:
    # Our own running server is "another" from the point of view of a second instance.
    config = zabbix_70.config
    superuser = dev_postgres.ensure_running(config)
    with pytest.raises(DevError, match=f"database {config.db_name} .* sessions"):
        dev_postgres.check_unused(config, superuser)


def test_the_chroot_has_its_locale_and_starts_no_services(zabbix_70: DevInstance) -> None:
    runtime = Runtime.of(zabbix_70.config)
    locales = runtime.run(["locale", "-a"]).stdout.decode().split()
    assert "en_US.utf8" in locales
    policy = runtime.run(["/usr/sbin/policy-rc.d"], check=False)
    assert policy.returncode == 101
    # postgresql's postinst created no unused "main" cluster.
    assert list(runtime.outside("/var/lib/postgresql").glob("*/main")) == []


@every_zabbix_version
def test_the_server_config_fits_its_version(zabbix_dev: DevInstance) -> None:
    settings = dict(
        line.split("=", 1)
        for line in zabbix_dev.config.server_conf.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["ListenPort"] == str(zabbix_dev.server_port)
    # 7.0's new pollers are off; 6.0 would refuse to start with parameters it does not know.
    expected = {"StartSNMPPollers": "0", "StartBrowserPollers": "0"}
    new_pollers = {k: settings[k] for k in expected if k in settings}
    assert new_pollers == (expected if zabbix_dev.version == "7.0" else {})
