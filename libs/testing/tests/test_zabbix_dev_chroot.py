"""The 7.0 instance's chroot: what it mounts, what it refuses, what is in it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yobidashi_testing.zabbix_dev import DevError, DevInstance, down, up
from yobidashi_testing.zabbix_dev import postgres as dev_postgres
from yobidashi_testing.zabbix_dev.mounts import mounts_under
from yobidashi_testing.zabbix_dev.runtime import Runtime
from yobidashi_testing.zabbix_dev.system import processes_rooted_at
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
