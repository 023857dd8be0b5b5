"""Settings of the dev instances: defaults per version, per-version overrides, clashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from yobidashi_harness.zabbix_dev import DevConfig, selected_version
from yobidashi_harness.zabbix_dev.config import CHROOT_STATE_DIR
from yobidashi_harness.zabbix_dev.runtime import Runtime
from yobidashi_harness.zabbix_dev.versions import major_minor, version_tuple


def test_7_0_is_the_default_and_zabbix_version_selects_another() -> None:
    assert selected_version({}) == "7.0"
    assert selected_version({"ZABBIX_VERSION": "6.0"}) == "6.0"
    with pytest.raises(ValueError, match=r"unknown Zabbix version '6\.4'; known: 6\.0, 7\.0"):
        selected_version({"ZABBIX_VERSION": "6.4"})


def test_each_version_has_its_own_defaults() -> None:
    old, new = DevConfig.for_versions(["6.0", "7.0"], {})
    # 6.0 keeps what running instances already use.
    assert (old.web_port, old.server_port, old.db_name) == (18081, 10151, "yobidashi_zabbix")
    assert old.run_dir.name == "zabbix"
    assert (new.web_port, new.server_port, new.db_name) == (18082, 10152, "yobidashi_zabbix_70")
    assert new.run_dir.name == "zabbix-7.0"
    assert (old.suite, new.suite) == (None, "trixie")
    assert new.mirror == "http://deb.debian.org/debian"
    assert new.cache_dir == Path("/var/cache/yobidashi/zabbix-dev")


def test_a_per_version_setting_wins_over_the_shared_one() -> None:
    env = {"ZBX_DEV_WEB_PORT": "18091", "ZBX_DEV_70_WEB_PORT": "18092", "ZBX_DEV_TZ": "Asia/Tokyo"}
    old, new = DevConfig.for_versions(["6.0", "7.0"], env)
    assert (old.web_port, new.web_port) == (18091, 18092)
    assert old.tz == new.tz == "Asia/Tokyo"


def test_the_suite_and_mirror_are_settings() -> None:
    env = {"ZBX_DEV_SUITE": "sid", "ZBX_DEV_MIRROR": "http://mirror.example/debian/"}
    config = DevConfig.from_env(env, version="7.0")
    assert (config.suite, config.mirror) == ("sid", "http://mirror.example/debian")
    # 8.0 is in no Debian suite yet: only an explicit suite gives it one.
    assert DevConfig.from_env({}, version="8.0").suite is None
    assert DevConfig.from_env({"ZBX_DEV_80_SUITE": "forky"}, version="8.0").suite == "forky"


def test_a_shared_setting_that_makes_two_versions_collide_is_refused() -> None:
    with pytest.raises(ValueError, match=r"would share: 18091 .*ZBX_DEV_60_WEB_PORT / ZBX_DEV_70"):
        DevConfig.for_versions(["6.0", "7.0"], {"ZBX_DEV_WEB_PORT": "18091"})
    with pytest.raises(ValueError, match="RUN_DIR"):
        DevConfig.for_versions(["6.0", "7.0"], {"ZBX_DEV_RUN_DIR": "/var/tmp/zbx"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ZBX_DEV_70_WEB_PORT": "80000"}, "ZBX_DEV_70_WEB_PORT='80000' is not a TCP port"),
        ({"ZBX_DEV_DB_NAME": "Robert'); DROP"}, "ZBX_DEV_DB_NAME=.*lower-case"),
        ({"ZBX_DEV_SUITE": "trixie main"}, "not a Debian suite name"),
        ({"ZBX_DEV_MIRROR": "deb.debian.org"}, "not an http"),
        ({"ZBX_DEV_WEB_PORT": "10152"}, "web and server port are both 10152"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DevConfig.from_env(env, version="7.0")


def test_a_chroot_version_keeps_its_processes_files_inside_the_chroot() -> None:
    config = DevConfig.from_env({"ZBX_DEV_70_RUN_DIR": "/var/tmp/z7"}, version="7.0")
    runtime = Runtime.of(config)
    # Its chroot is its own, and outside the run dir: repository walkers never meet its /proc.
    assert config.root is not None
    assert config.root.parent == Path("/var/lib/yobidashi/zabbix-dev/chroots")
    assert config.root.name.startswith("z7-")
    other = DevConfig.from_env({"ZBX_DEV_70_RUN_DIR": "/srv/x/z7"}, version="7.0")
    assert other.root != config.root
    assert runtime.inside(config.server_conf) == f"{CHROOT_STATE_DIR}/zabbix_server.conf"
    assert runtime.inside(config.frontend_conf) == "/etc/zabbix/zabbix.conf.php"
    assert runtime.outside("/usr/sbin/zabbix_server") == config.root / "usr/sbin/zabbix_server"
    # What the host side writes (PHP's output, apt) stays in the run dir.
    assert config.php_log == Path("/var/tmp/z7/log/php.log")
    host = DevConfig.from_env({"ZBX_DEV_60_RUN_DIR": "/var/tmp/z6"}, version="6.0")
    assert Runtime.of(host).inside(host.server_conf) == "/var/tmp/z6/zabbix_server.conf"


def test_versions_are_read_from_debian_and_upstream_spellings() -> None:
    assert major_minor("1:7.0.22+dfsg-1~deb13u1") == "7.0"
    assert major_minor("6.0.14") == "6.0"
    assert version_tuple("7.0.22") == (7, 0)
