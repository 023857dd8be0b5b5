"""A Zabbix JSON-RPC API stand-in: each version's rules (6.0 to 8.0) and failure injection.

One stand-in for every user: the acker's contract and handler tests, the benchmarks, ``make
run`` (mounted in the devstack console) and ``yobidashi-zabbix-standin`` (its own process).
"""

from yobidashi_zabbix_standin.api import USER, RpcError, Seen, StandInEvent, Write, ZabbixStandIn
from yobidashi_zabbix_standin.app import StandInApp
from yobidashi_zabbix_standin.faults import (
    CANNOT_CLOSE,
    DROP,
    LOST_ANSWER,
    NOT_AUTHORIZED,
    Fault,
    Faults,
    http_error,
    rpc_error,
)
from yobidashi_zabbix_standin.server import serve
from yobidashi_zabbix_standin.settings import StandInSettings

__all__ = [
    "CANNOT_CLOSE",
    "DROP",
    "LOST_ANSWER",
    "NOT_AUTHORIZED",
    "USER",
    "Fault",
    "Faults",
    "RpcError",
    "Seen",
    "StandInApp",
    "StandInEvent",
    "StandInSettings",
    "Write",
    "ZabbixStandIn",
    "http_error",
    "rpc_error",
    "serve",
]
