"""Idempotent Zabbix provisioning and event helpers for end-to-end tests.

`provision` builds the whole chain in one call: host group, host, trapper item, trigger, an
imported webhook media type with its parameters set, on-call users with phone media (one per
escalation step), the action, and the ``yobidashi-acker`` API user with a token. Every name
derives from a prefix, so tests with different prefixes coexist.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..zabbix_api import ZabbixRpc
from .events import (
    ACK_ACKNOWLEDGE,
    ACK_CLOSE,
    ACK_MESSAGE,
    ALERT_FAILED,
    ALERT_NOT_SENT,
    ALERT_SENT,
    acknowledge,
    acknowledges,
    acknowledges_option,
    alerts,
    get_event,
    last_event_id,
    open_problems,
    send,
    wait_for_acknowledged,
    wait_for_alerts,
    wait_for_config_sync,
    wait_for_problem,
    wait_for_resolved,
)
from .objects import (
    ApiToken,
    EscalationStep,
    Media,
    TrapperHost,
    UserSpec,
    action_operations,
    ensure_action,
    ensure_api_token,
    ensure_host,
    ensure_host_group,
    ensure_trapper_host,
    ensure_trapper_item,
    ensure_trigger,
    ensure_user,
    ensure_user_group,
    import_media_type,
    set_media_type_parameters,
    set_user_media,
)

ACKER_USERNAME = "yobidashi-acker"


@dataclass(frozen=True)
class ScenarioNames:
    """Names of everything `provision` creates. ``for_prefix`` derives them all."""

    host_group: str
    host: str
    item_key: str
    trigger: str
    media_type: str
    oncall_group: str
    oncall_user: str  # step n's user is f"{oncall_user}-{n}"
    action: str
    acker_group: str
    acker_user: str
    acker_token: str

    @classmethod
    def for_prefix(cls, prefix: str, *, acker_user: str = ACKER_USERNAME) -> ScenarioNames:
        return cls(
            host_group=f"{prefix} hosts",
            host=f"{prefix}-host",
            item_key="yobidashi.test.value",
            trigger=f"{prefix} value high",
            media_type=f"{prefix} webhook",
            oncall_group=f"{prefix} on-call",
            oncall_user=f"{prefix}-oncall",
            action=f"{prefix} action",
            # One group for the acker: each scenario adds read rights on its host group.
            acker_group="Yobidashi ackers",
            acker_user=acker_user,
            # One token per scenario, so regenerating it does not break another test's token.
            acker_token=prefix,
        )


@dataclass(frozen=True)
class Scenario:
    names: ScenarioNames
    groupid: str
    hostid: str
    itemid: str
    triggerid: str
    mediatypeid: str
    oncall_userids: tuple[str, ...]
    actionid: str
    acker_userid: str
    acker_token: ApiToken
    changed_at: float  # time.time() after the last API change; for wait_for_config_sync


def provision(
    rpc: ZabbixRpc,
    names: ScenarioNames,
    *,
    media_type_yaml: Path,
    media_parameters: Mapping[str, str],
    phones: Sequence[str] = ("+15555550100",),
    threshold: float = 5,
    priority: int = 4,
    esc_period: str = "60s",
    host_tags: Mapping[str, str] | None = None,
    trigger_tags: Mapping[str, str] | None = None,
) -> Scenario:
    """Create or update the whole chain; one escalation step (and on-call user) per phone.

    The trigger fires when the trapper item's last value is above ``threshold``.
    """
    groupid = ensure_host_group(rpc, names.host_group)
    hostid = ensure_host(rpc, names.host, groupid, host_tags or {"env": "test"})
    itemid = ensure_trapper_item(rpc, hostid, names.item_key, name="Yobidashi test value")
    expression = f"last(/{names.host}/{names.item_key})>{threshold:g}"
    triggerid = ensure_trigger(
        rpc,
        hostid,
        names.trigger,
        expression,
        priority=priority,
        tags=trigger_tags or {"service": "test", "component": "value"},
    )
    mediatypeid = import_media_type(rpc, media_type_yaml, name=names.media_type)
    set_media_type_parameters(rpc, mediatypeid, media_parameters)
    oncall_group = ensure_user_group(rpc, names.oncall_group, [groupid])
    oncall_userids = []
    for number, phone in enumerate(phones, start=1):
        spec = UserSpec(
            username=f"{names.oncall_user}-{number}",
            usrgrpids=[oncall_group],
            name="On-call",
            surname=f"Step {number}",
        )
        userid = ensure_user(rpc, spec)
        set_user_media(rpc, userid, Media(mediatypeid=mediatypeid, sendto=phone))
        oncall_userids.append(userid)
    operations = action_operations(mediatypeid, [EscalationStep([u]) for u in oncall_userids])
    actionid = ensure_action(rpc, names.action, groupid, operations, esc_period=esc_period)
    acker_group = ensure_user_group(rpc, names.acker_group, [groupid])
    acker_userid = ensure_user(
        rpc,
        UserSpec(
            username=names.acker_user, usrgrpids=[acker_group], name="Yobidashi", surname="Acker"
        ),
    )
    token = ensure_api_token(rpc, acker_userid, names.acker_token)
    return Scenario(
        names=names,
        groupid=groupid,
        hostid=hostid,
        itemid=itemid,
        triggerid=triggerid,
        mediatypeid=mediatypeid,
        oncall_userids=tuple(oncall_userids),
        actionid=actionid,
        acker_userid=acker_userid,
        acker_token=token,
        changed_at=time.time(),
    )


__all__ = [
    "ACKER_USERNAME",
    "ACK_ACKNOWLEDGE",
    "ACK_CLOSE",
    "ACK_MESSAGE",
    "ALERT_FAILED",
    "ALERT_NOT_SENT",
    "ALERT_SENT",
    "ApiToken",
    "EscalationStep",
    "Media",
    "Scenario",
    "ScenarioNames",
    "TrapperHost",
    "UserSpec",
    "acknowledge",
    "acknowledges",
    "acknowledges_option",
    "action_operations",
    "alerts",
    "ensure_action",
    "ensure_api_token",
    "ensure_host",
    "ensure_host_group",
    "ensure_trapper_host",
    "ensure_trapper_item",
    "ensure_trigger",
    "ensure_user",
    "ensure_user_group",
    "get_event",
    "import_media_type",
    "last_event_id",
    "open_problems",
    "provision",
    "send",
    "set_media_type_parameters",
    "set_user_media",
    "wait_for_acknowledged",
    "wait_for_alerts",
    "wait_for_config_sync",
    "wait_for_problem",
    "wait_for_resolved",
]
