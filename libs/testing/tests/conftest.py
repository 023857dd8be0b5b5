"""The harness's own tests must not use anything a Zabbix version has deprecated.

Zabbix reports deprecated API usage only as a PHP notice in the frontend's log, so every test
here that uses ``zabbix_dev`` is checked afterwards for new ``PHP Deprecated`` lines there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yobidashi_testing.zabbix_dev import DevInstance
from yobidashi_testing.zabbix_php_log import PhpLog


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
