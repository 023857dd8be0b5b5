"""Drive and observe events: send values, wait for problems, acknowledge, read alerts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from yobidashi_harness.waiting import wait_until

from ..zabbix_api import ZabbixRpc
from ..zabbix_sender import SenderResult, send_value

# event.acknowledge action bits (6.0)
ACK_CLOSE = 1
ACK_ACKNOWLEDGE = 2
ACK_MESSAGE = 4
# alert.get status
ALERT_NOT_SENT = "0"
ALERT_SENT = "1"
ALERT_FAILED = "2"


def wait_for_config_sync(
    host: str,
    key: str,
    *,
    server_port: int,
    server_host: str = "127.0.0.1",
    changed_at: float | None = None,
    sync_interval: float = 2.0,
    timeout: float = 120,
) -> None:
    """Wait until the server's config cache has the item, and settle after recent changes.

    New API objects reach zabbix_server only at its next config sync; until then the trapper
    answers ``processed: 0; failed: 1`` and a just-created action is silently not applied.
    Sending 0 is the probe (it also resolves a problem left open). ``changed_at``
    (``time.time()`` of the last API change) adds two sync intervals after it, so that objects
    created after the item (the action) are in the cache too.
    """

    def probe() -> SenderResult | None:
        result = send_value(host, key, 0, host=server_host, port=server_port)
        return result if result.processed == 1 else None

    wait_until(
        f"trapper item {host}:{key} to be in zabbix_server's config cache "
        f"(sending 0 to 127.0.0.1:{server_port} until processed: 1)",
        probe,
        timeout=timeout,
        interval=0.5,
    )
    if changed_at is not None:
        remaining = changed_at + 2 * sync_interval + 0.5 - time.time()
        if remaining > 0:
            time.sleep(remaining)


def send(
    host: str, key: str, value: object, *, server_port: int, server_host: str = "127.0.0.1"
) -> SenderResult:
    """Send one value; raise if the trapper did not process it (item unknown or not synced)."""
    result = send_value(host, key, value, host=server_host, port=server_port)
    if result.processed != 1:
        raise RuntimeError(f"value {value!r} for {host}:{key} not processed: {result.info}")
    return result


def last_event_id(rpc: ZabbixRpc, triggerid: str) -> int:
    """The newest event of the trigger (problem or recovery), 0 if none: a baseline."""
    found = rpc.call(
        "event.get",
        {
            "objectids": [triggerid],
            "source": 0,
            "object": 0,
            "output": ["eventid"],
            "sortfield": ["eventid"],
            "sortorder": "DESC",
            "limit": 1,
        },
    )
    return int(found[0]["eventid"]) if found else 0


def open_problems(rpc: ZabbixRpc, triggerid: str) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = rpc.call(
        "problem.get",
        {
            "objectids": [triggerid],
            "output": "extend",
            "selectTags": "extend",
            "sortfield": ["eventid"],
            "sortorder": "DESC",
        },
    )
    return problems


def wait_for_problem(
    rpc: ZabbixRpc, triggerid: str, *, after_eventid: int = 0, timeout: float = 60
) -> dict[str, Any]:
    """The newest open problem of the trigger with an event ID above ``after_eventid``."""

    def probe() -> dict[str, Any] | None:
        newer = [p for p in open_problems(rpc, triggerid) if int(p["eventid"]) > after_eventid]
        return newer[0] if newer else None

    return wait_until(
        f"a problem of trigger {triggerid} newer than event {after_eventid}", probe, timeout=timeout
    )


def acknowledges_option(rpc: ZabbixRpc) -> str:
    # 7.0 renamed select_acknowledges (deprecated there, gone in 7.2); 6.0 knows only the old.
    return "selectAcknowledges" if rpc.api_release >= (7, 0) else "select_acknowledges"


def get_event(rpc: ZabbixRpc, eventid: str | int) -> dict[str, Any]:
    """The event with its acknowledges and tags."""
    found = rpc.call(
        "event.get",
        {
            "eventids": [str(eventid)],
            "output": "extend",
            acknowledges_option(rpc): "extend",
            "selectTags": "extend",
        },
    )
    if not found:
        raise LookupError(f"event {eventid} not found")
    event: dict[str, Any] = found[0]
    return event


def acknowledges(rpc: ZabbixRpc, eventid: str | int) -> list[dict[str, Any]]:
    acks: list[dict[str, Any]] = get_event(rpc, eventid)["acknowledges"]
    return acks


def acknowledge(
    rpc: ZabbixRpc, eventid: str | int, message: str, action: int = ACK_ACKNOWLEDGE | ACK_MESSAGE
) -> None:
    """``event.acknowledge``; a second ack of an acked event is stored as a message only."""
    rpc.call(
        "event.acknowledge", {"eventids": [str(eventid)], "action": action, "message": message}
    )


def wait_for_acknowledged(
    rpc: ZabbixRpc, eventid: str | int, *, message: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the event is ``acknowledged == "1"`` (and carries ``message``, if given)."""

    def probe() -> dict[str, Any] | None:
        event = get_event(rpc, eventid)
        if event["acknowledged"] != "1":
            return None
        if message is not None and not any(a["message"] == message for a in event["acknowledges"]):
            return None
        return event

    return wait_until(f"event {eventid} to be acknowledged", probe, timeout=timeout)


def wait_for_resolved(rpc: ZabbixRpc, eventid: str | int, *, timeout: float = 60) -> dict[str, Any]:
    """Wait until the problem event has a recovery event (``r_eventid`` != 0)."""

    def probe() -> dict[str, Any] | None:
        event = get_event(rpc, eventid)
        return event if event["r_eventid"] != "0" else None

    return wait_until(f"event {eventid} to be resolved", probe, timeout=timeout)


def alerts(
    rpc: ZabbixRpc, eventid: str | int, mediatypeid: str | None = None
) -> list[dict[str, Any]]:
    """Alerts of a problem event, including its update and recovery notifications.

    Update alerts have a non-zero ``acknowledgeid``; recovery alerts belong to the recovery
    event and point at the problem through ``p_eventid``, so both are fetched.
    """
    params: dict[str, Any] = {"output": "extend", "sortfield": ["alertid"]}
    if mediatypeid is not None:
        params["mediatypeids"] = [mediatypeid]
    own: list[dict[str, Any]] = rpc.call("alert.get", {**params, "eventids": [str(eventid)]})
    event = get_event(rpc, eventid)
    if event["r_eventid"] != "0":
        own += rpc.call("alert.get", {**params, "eventids": [event["r_eventid"]]})
    return own


def wait_for_alerts(
    rpc: ZabbixRpc,
    eventid: str | int,
    predicate: Callable[[list[dict[str, Any]]], bool],
    *,
    description: str,
    mediatypeid: str | None = None,
    timeout: float = 60,
) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        found = alerts(rpc, eventid, mediatypeid)
        return found if predicate(found) else None

    return wait_until(f"alerts of event {eventid}: {description}", probe, timeout=timeout)
