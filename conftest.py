"""Fixtures every test directory can use: real NATS, real Zabbix, the Twilio simulator."""

pytest_plugins = [
    "yobidashi_testing.nats_fixtures",
    "yobidashi_testing.zabbix_fixtures",
]
