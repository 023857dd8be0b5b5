"""Idempotent "ensure" helpers: find by name, create when missing, else update in place.

Each returns the object's ID (a string, as every ``*.get`` returns IDs). Names are the keys, so
tests that pick different names coexist in one Zabbix.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..zabbix_api import ZabbixRpc

Tags = Mapping[str, str]

TRAPPER = 2
FLOAT = 0
PERM_READ = 2
# Operation condition "event is not acknowledged", for escalation steps after the first.
NOT_ACKNOWLEDGED = {"conditiontype": 14, "operator": 0, "value": "0"}
OP_SEND_MESSAGE = 0
OP_RECOVERY_NOTIFY_INVOLVED = 11
OP_UPDATE_NOTIFY_INVOLVED = 12
ALL_SEVERITIES = 63


def _tags(tags: Tags) -> list[dict[str, str]]:
    return [{"tag": k, "value": v} for k, v in tags.items()]


def _find(rpc: ZabbixRpc, method: str, id_field: str, params: Mapping[str, Any]) -> str | None:
    found = rpc.call(method, {**params, "output": [id_field]})
    return str(found[0][id_field]) if found else None


def ensure_host_group(rpc: ZabbixRpc, name: str) -> str:
    groupid = _find(rpc, "hostgroup.get", "groupid", {"filter": {"name": [name]}})
    if groupid:
        return groupid
    return str(rpc.call("hostgroup.create", {"name": name})["groupids"][0])


def ensure_host(rpc: ZabbixRpc, host: str, groupid: str, tags: Tags | None = None) -> str:
    """A host without interfaces (trapper items need none), enabled, in ``groupid`` only."""
    spec = {"groups": [{"groupid": groupid}], "tags": _tags(tags or {}), "status": 0}
    hostid = _find(rpc, "host.get", "hostid", {"filter": {"host": [host]}})
    if hostid:
        rpc.call("host.update", {"hostid": hostid, **spec})
        return hostid
    return str(rpc.call("host.create", {"host": host, **spec})["hostids"][0])


def ensure_trapper_item(
    rpc: ZabbixRpc, hostid: str, key: str, name: str | None = None, value_type: int = FLOAT
) -> str:
    itemid = _find(rpc, "item.get", "itemid", {"hostids": [hostid], "filter": {"key_": [key]}})
    if itemid:
        rpc.call("item.update", {"itemid": itemid, "status": 0})
        return itemid
    params = {
        "hostid": hostid,
        "name": name or key,
        "key_": key,
        "type": TRAPPER,
        "value_type": value_type,
    }
    return str(rpc.call("item.create", params)["itemids"][0])


@dataclass(frozen=True)
class TrapperHost:
    """A host group, a host in it and a trapper item on it: where a test raises problems."""

    groupid: str
    hostid: str
    host: str
    key: str

    def above(self, threshold: float) -> str:
        """A trigger expression: the item's last value is above ``threshold``."""
        return f"last(/{self.host}/{self.key})>{threshold:g}"


def ensure_trapper_host(rpc: ZabbixRpc, prefix: str, key: str) -> TrapperHost:
    groupid = ensure_host_group(rpc, f"{prefix} hosts")
    host = f"{prefix}-host"
    hostid = ensure_host(rpc, host, groupid)
    ensure_trapper_item(rpc, hostid, key)
    return TrapperHost(groupid, hostid, host, key)


def ensure_trigger(
    rpc: ZabbixRpc,
    hostid: str,
    description: str,
    expression: str,
    *,
    priority: int = 4,
    tags: Tags | None = None,
    manual_close: bool = True,
) -> str:
    """``manual_close`` lets ``event.acknowledge`` close the problem (action bit 1)."""
    spec = {
        "expression": expression,
        "priority": priority,
        "manual_close": int(manual_close),
        "tags": _tags(tags or {}),
        "status": 0,
    }
    triggerid = _find(
        rpc,
        "trigger.get",
        "triggerid",
        {"hostids": [hostid], "filter": {"description": [description]}},
    )
    if triggerid:
        rpc.call("trigger.update", {"triggerid": triggerid, **spec})
        return triggerid
    return str(rpc.call("trigger.create", {"description": description, **spec})["triggerids"][0])


def media_type_names(source: str) -> list[str]:
    export = yaml.safe_load(source)["zabbix_export"]
    return [str(m["name"]) for m in export.get("media_types", [])]


def import_media_type(rpc: ZabbixRpc, path: Path, *, name: str | None = None) -> str:
    """Import the single media type in a Zabbix YAML export; return its ID.

    ``name`` renames it before the import, so that tests can each own a copy with their own
    ``URL`` parameter.
    """
    source = path.read_text()
    if name is not None:
        data = yaml.safe_load(source)
        media_types = data["zabbix_export"]["media_types"]
        if len(media_types) != 1:
            raise ValueError(f"{path}: expected one media type, found {len(media_types)}")
        media_types[0]["name"] = name
        source = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    names = media_type_names(source)
    if len(names) != 1:
        raise ValueError(f"{path}: expected one media type, found {names}")
    rules = {"mediaTypes": {"createMissing": True, "updateExisting": True}}
    rpc.call("configuration.import", {"format": "yaml", "source": source, "rules": rules})
    mediatypeid = _find(rpc, "mediatype.get", "mediatypeid", {"filter": {"name": names}})
    if mediatypeid is None:
        raise LookupError(f"media type {names[0]!r} not found after configuration.import")
    return mediatypeid


def set_media_type_parameters(rpc: ZabbixRpc, mediatypeid: str, values: Mapping[str, str]) -> None:
    """Set webhook parameter values by name (others kept; unknown names are added)."""
    found = rpc.call(
        "mediatype.get", {"mediatypeids": [mediatypeid], "output": ["mediatypeid", "parameters"]}
    )
    if not found:
        raise LookupError(f"media type {mediatypeid} not found")
    params = [{"name": p["name"], "value": p["value"]} for p in found[0]["parameters"]]
    known = {p["name"] for p in params}
    for param in params:
        if param["name"] in values:
            param["value"] = values[param["name"]]
    params += [{"name": k, "value": v} for k, v in values.items() if k not in known]
    rpc.call("mediatype.update", {"mediatypeid": mediatypeid, "parameters": params, "status": 0})


def _host_group_rights(rpc: ZabbixRpc) -> tuple[str, str]:
    """(property, select option) of a user group's host group permissions.

    6.2 split ``rights`` into host group and template group rights and later removed it.
    """
    if rpc.api_release >= (6, 2):
        return "hostgroup_rights", "selectHostGroupRights"
    return "rights", "selectRights"


def ensure_user_group(
    rpc: ZabbixRpc, name: str, read_groupids: Sequence[str], permission: int = PERM_READ
) -> str:
    """A user group with (at least) ``permission`` on ``read_groupids``; other rights kept."""
    prop, select = _host_group_rights(rpc)
    found = rpc.call(
        "usergroup.get", {"filter": {"name": [name]}, "output": ["usrgrpid"], select: "extend"}
    )
    if not found:
        new = [{"permission": permission, "id": g} for g in read_groupids]
        return str(rpc.call("usergroup.create", {"name": name, prop: new})["usrgrpids"][0])
    usrgrpid = str(found[0]["usrgrpid"])
    # An update replaces all rights, so the existing ones are merged in.
    rights = {str(r["id"]): int(r["permission"]) for r in found[0][prop]}
    missing = [g for g in read_groupids if rights.get(g, 0) < permission]
    if missing:
        rights.update(dict.fromkeys(missing, permission))
        merged = [{"permission": p, "id": g} for g, p in rights.items()]
        rpc.call("usergroup.update", {"usrgrpid": usrgrpid, prop: merged})
    return usrgrpid


def role_id(rpc: ZabbixRpc, name: str) -> str:
    roleid = _find(rpc, "role.get", "roleid", {"filter": {"name": [name]}})
    if roleid is None:
        raise LookupError(f"no user role named {name!r}")
    return roleid


@dataclass(frozen=True)
class Media:
    mediatypeid: str
    sendto: str
    severity: int = ALL_SEVERITIES
    period: str = "1-7,00:00-24:00"

    def as_api(self) -> dict[str, Any]:
        return {
            "mediatypeid": self.mediatypeid,
            "sendto": self.sendto,
            "active": 0,
            "severity": self.severity,
            "period": self.period,
        }


@dataclass(frozen=True)
class UserSpec:
    username: str
    usrgrpids: Sequence[str]
    name: str = ""
    surname: str = ""
    role: str = "User role"
    # 6.0 rejects passwords containing the name, surname or username; a random one never does.
    password: str = field(default_factory=lambda: "Pw-" + secrets.token_urlsafe(18))


def ensure_user(rpc: ZabbixRpc, spec: UserSpec) -> str:
    params = {
        "name": spec.name,
        "surname": spec.surname,
        "passwd": spec.password,
        "roleid": role_id(rpc, spec.role),
        "usrgrps": [{"usrgrpid": g} for g in spec.usrgrpids],
    }
    userid = _find(rpc, "user.get", "userid", {"filter": {"username": [spec.username]}})
    if userid:
        rpc.call("user.update", {"userid": userid, **params})
        return userid
    return str(rpc.call("user.create", {"username": spec.username, **params})["userids"][0])


def set_user_media(rpc: ZabbixRpc, userid: str, media: Media) -> None:
    """Give the user ``media``, replacing their media of that type and keeping the rest.

    ``user.update`` ``medias`` replaces all of a user's media, so the others are re-sent.
    """
    found = rpc.call(
        "user.get", {"userids": [userid], "output": ["userid"], "selectMedias": "extend"}
    )
    keep = [
        {k: m[k] for k in ("mediatypeid", "sendto", "active", "severity", "period")}
        for m in found[0]["medias"]
        if m["mediatypeid"] != media.mediatypeid
    ]
    rpc.call("user.update", {"userid": userid, "medias": [*keep, media.as_api()]})


@dataclass(frozen=True)
class ApiToken:
    tokenid: str
    token: str


def ensure_api_token(rpc: ZabbixRpc, userid: str, name: str) -> ApiToken:
    """A token named ``name`` for the user, with a freshly generated secret.

    Generating invalidates the previous secret of that token (not the user's other tokens).
    """
    tokenid = _find(rpc, "token.get", "tokenid", {"userids": [userid], "filter": {"name": [name]}})
    if tokenid is None:
        tokenid = str(rpc.call("token.create", {"name": name, "userid": userid})["tokenids"][0])
    generated = rpc.call("token.generate", [tokenid])
    return ApiToken(tokenid=tokenid, token=str(generated[0]["token"]))


@dataclass(frozen=True)
class EscalationStep:
    """One escalation step: notify these users through the media type."""

    userids: Sequence[str]


def _message_op(mediatypeid: str, userids: Sequence[str] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationtype": OP_SEND_MESSAGE,
        "opmessage": {"default_msg": 1, "mediatypeid": mediatypeid},
    }
    if userids:
        op["opmessage_usr"] = [{"userid": u} for u in userids]
    return op


def action_operations(
    mediatypeid: str,
    steps: Sequence[EscalationStep],
    *,
    recovery_userids: Sequence[str] | None = None,
    update_userids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Problem, recovery and update operations for `ensure_action`.

    Step *n* (1-based) runs at ``(n - 1) * esc_period``. Steps after the first carry the
    "event is not acknowledged" condition: Zabbix does not stop escalating on an ack by itself.
    Recovery and update notify "all involved" unless explicit users are given.
    """
    if not steps:
        raise ValueError("an action needs at least one escalation step")
    operations = []
    for number, step in enumerate(steps, start=1):
        op = _message_op(mediatypeid, step.userids)
        op.update(esc_step_from=number, esc_step_to=number, esc_period="0")
        if number > 1:
            op["opconditions"] = [dict(NOT_ACKNOWLEDGED)]
        operations.append(op)
    # "Notify all involved" takes no media type in 6.0: it reuses each user's earlier media.
    if recovery_userids is None:
        recovery = {"operationtype": OP_RECOVERY_NOTIFY_INVOLVED, "opmessage": {"default_msg": 1}}
    else:
        recovery = _message_op(mediatypeid, recovery_userids)
    if update_userids is None:
        update = {"operationtype": OP_UPDATE_NOTIFY_INVOLVED, "opmessage": {"default_msg": 1}}
    else:
        update = _message_op(mediatypeid, update_userids)
    return {
        "operations": operations,
        "recovery_operations": [recovery],
        "update_operations": [update],
    }


def ensure_action(
    rpc: ZabbixRpc,
    name: str,
    groupid: str,
    operations: Mapping[str, Any],
    *,
    esc_period: str = "60s",
) -> str:
    """A trigger action for problems of hosts in ``groupid``; operations from `action_operations`.

    ``esc_period`` must be at least 60 s (Zabbix rejects less).
    """
    spec = {
        "esc_period": esc_period,
        "status": 0,
        "filter": {
            "evaltype": 0,
            "conditions": [{"conditiontype": 0, "operator": 0, "value": groupid}],
        },
        **operations,
    }
    actionid = _find(rpc, "action.get", "actionid", {"filter": {"name": [name]}})
    if actionid:
        rpc.call("action.update", {"actionid": actionid, **spec})
        return actionid
    params = {"name": name, "eventsource": 0, **spec}
    return str(rpc.call("action.create", params)["actionids"][0])
