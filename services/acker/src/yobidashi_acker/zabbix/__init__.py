"""The acker's view of the Zabbix API: an interface, its HTTP client, and the version rules."""

from yobidashi_acker.zabbix.api import AckEntry, EventInfo, ZabbixApi, ZabbixStatus
from yobidashi_acker.zabbix.client import HttpZabbixApi
from yobidashi_acker.zabbix.connection import ZabbixConnection
from yobidashi_acker.zabbix.errors import ErrorKind, ZabbixError
from yobidashi_acker.zabbix.rules import ZabbixVersion

__all__ = [
    "AckEntry",
    "ErrorKind",
    "EventInfo",
    "HttpZabbixApi",
    "ZabbixApi",
    "ZabbixConnection",
    "ZabbixError",
    "ZabbixStatus",
    "ZabbixVersion",
]
