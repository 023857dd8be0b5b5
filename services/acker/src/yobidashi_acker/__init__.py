"""Yobidashi acker: keypresses from the bus become acknowledgements in Zabbix."""

__version__ = "0.1.0"
