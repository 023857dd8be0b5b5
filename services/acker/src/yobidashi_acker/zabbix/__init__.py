"""The acker's view of the Zabbix API: an interface, its pyzabbix adapter, and the rules."""

from yobidashi_acker.zabbix.api import AckEntry, EventInfo, ZabbixApi, ZabbixStatus
from yobidashi_acker.zabbix.errors import ErrorKind, ZabbixError
from yobidashi_acker.zabbix.pyzabbix_adapter import PyZabbixApi, ZabbixConnection
from yobidashi_acker.zabbix.rules import ZabbixVersion

__all__ = [
    "AckEntry",
    "ErrorKind",
    "EventInfo",
    "PyZabbixApi",
    "ZabbixApi",
    "ZabbixConnection",
    "ZabbixError",
    "ZabbixStatus",
    "ZabbixVersion",
]
