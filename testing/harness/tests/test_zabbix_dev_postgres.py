"""The database side of purge, against the PostgreSQL the 7.0 instance uses."""

from __future__ import annotations

import dataclasses

import pytest

from yobidashi_harness.zabbix_dev import postgres as dev_postgres
from yobidashi_testing.zabbix_fixtures import ZabbixInstances

pytestmark = pytest.mark.zabbix


def test_purge_keeps_a_role_that_still_owns_another_database(
    zabbix_instance: ZabbixInstances,
) -> None:
    base = zabbix_instance("7.0").config
    superuser = dev_postgres.ensure_running(base)
    one = dataclasses.replace(base, db_name="zbxdev_shared_one", db_user="zbxdev_shared_role")
    two = dataclasses.replace(one, db_name="zbxdev_shared_two")

    def role_exists() -> bool:
        return superuser.sql("SELECT 1 FROM pg_roles WHERE rolname = 'zbxdev_shared_role'") == "1"

    try:
        for config in (one, two):
            dev_postgres.ensure_role_and_db(config, superuser)
        dev_postgres.drop_db(one, superuser, drop_role=True)
        assert role_exists(), "the role still owns zbxdev_shared_two"
        dev_postgres.drop_db(two, superuser, drop_role=True)
        assert not role_exists()
    finally:
        for config in (one, two):
            superuser.sql(f"DROP DATABASE IF EXISTS {config.db_name} WITH (FORCE)")
        superuser.sql("DROP ROLE IF EXISTS zbxdev_shared_role")
