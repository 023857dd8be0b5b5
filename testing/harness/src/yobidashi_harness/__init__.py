"""What the tests, the benchmarks and ``make run`` start on one machine, without pytest.

- `nats_server`, `nats_cluster`: a nats-server, or three joined by routes, on loopback.
- `processes`: a service's console script as a child process, waited on until it answers.
- `zabbix_dev`: a real Zabbix 6.0 (bookworm) or 7.0 (trixie, in a chroot) on loopback;
  `zabbix_api`, `zabbix_scenario`, `zabbix_sender`, `zabbix_php_log` to drive and read it.
- `media_type`, `payloads`: our media type file and the webhook it sends.

Pytest fixtures built on these live in ``yobidashi_testing`` (``testing/fixtures``).
"""
