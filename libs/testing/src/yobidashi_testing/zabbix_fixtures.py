"""Pytest fixtures for the dev Zabbix instances (register with ``pytest_plugins``).

- ``zabbix_dev`` (session): the default version, 7.0 unless ``ZABBIX_VERSION`` says otherwise.
  Parametrise it indirectly to ask for a version; `every_zabbix_version` does that for 6.0
  and 7.0::

      @every_zabbix_version
      def test_x(zabbix_dev: DevInstance, zabbix_admin: ZabbixRpc) -> None: ...

      @pytest.mark.parametrize("zabbix_dev", ["6.0"], indirect=True)
      def test_only_on_6_0(zabbix_dev: DevInstance) -> None: ...

- ``zabbix_instance`` (session): a factory, ``zabbix_instance("6.0")``, for a test that needs
  two versions at once.
- ``zabbix_admin``: a `ZabbixRpc` logged in as Admin on whichever instance ``zabbix_dev`` is.
- Every test that uses ``zabbix_dev`` fails if the frontend logged a ``PHP Deprecated`` line
  while it ran: Zabbix reports deprecated API usage (ours or the tests' own) only there.

Each version is brought up once per session by the same idempotent ``up`` as
``deploy/zabbix/dev/zabbix-dev up`` and left running afterwards, so the next session starts in
about a second. Where an instance cannot exist (not Debian, no root for a chroot, …), tests
that use it are skipped with the reason, unless ``ZBX_DEV_REQUIRED=1`` (then they fail).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from .zabbix_api import ZabbixRpc
from .zabbix_dev import TESTED_VERSIONS, DevConfig, DevInstance, Unsupported, selected_version, up
from .zabbix_dev.config import check_no_clash
from .zabbix_php_log import PhpLog

ZabbixInstances = Callable[[str], DevInstance]

every_zabbix_version = pytest.mark.parametrize(
    "zabbix_dev", TESTED_VERSIONS, indirect=True, ids=[f"zabbix-{v}" for v in TESTED_VERSIONS]
)


def _up_or_skip(config: DevConfig) -> DevInstance:
    try:
        return up(config)
    except Unsupported as exc:
        reason = f"dev Zabbix {config.version} cannot run on this machine: {exc}"
        if os.environ.get("ZBX_DEV_REQUIRED") == "1":
            pytest.fail(f"{reason} (and ZBX_DEV_REQUIRED=1)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def zabbix_instance() -> ZabbixInstances:
    """``zabbix_instance("6.0")``: that version's running instance (brought up once)."""
    running: dict[str, DevInstance] = {}
    # A version that failed (or was skipped) fails the same way for later tests, at once.
    failed: dict[str, BaseException] = {}

    def get(version: str) -> DevInstance:
        config = DevConfig.from_env(version=version)
        if config.version in failed:
            raise failed[config.version]
        if config.version not in running:
            try:
                for other in running.values():
                    check_no_clash(config, other.config)
                running[config.version] = _up_or_skip(config)
            except BaseException as exc:
                failed[config.version] = exc
                raise
        return running[config.version]

    return get


@pytest.fixture(scope="session")
def zabbix_dev(request: pytest.FixtureRequest, zabbix_instance: ZabbixInstances) -> DevInstance:
    """The running dev Zabbix: API URL, Admin credentials, trapper port, versions, config."""
    version = getattr(request, "param", None) or selected_version()
    return zabbix_instance(str(version))


@pytest.fixture
def zabbix_admin(zabbix_dev: DevInstance) -> ZabbixRpc:
    """A `ZabbixRpc` logged in as Admin on ``zabbix_dev`` (a fresh session per test)."""
    rpc = ZabbixRpc(zabbix_dev.api_url, api_version=zabbix_dev.zabbix_version)
    rpc.login(zabbix_dev.admin_username, zabbix_dev.admin_password)
    return rpc


@pytest.fixture(autouse=True)
def no_php_deprecations(request: pytest.FixtureRequest) -> Iterator[None]:
    if "zabbix_dev" not in request.fixturenames:
        yield
        return
    instance: DevInstance = request.getfixturevalue("zabbix_dev")
    log = PhpLog(instance.config.php_log)
    yield
    found = log.deprecations()
    assert not found, f"Zabbix {instance.zabbix_version} logged deprecations: {found}"
