"""Build media_yobidashi.yaml (Zabbix export format 6.0) from media_yobidashi.js.

The script lives in its own file so it can be read, linted and tested; the YAML that admins import
embeds it. Run ``make media-type`` after editing the JS; a test fails if the YAML is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
SCRIPT = HERE / "media_yobidashi.js"
TARGET = HERE / "media_yobidashi.yaml"

# name -> value. Macros resolve when Zabbix creates the alert; URL and token are set by the admin.
PARAMETERS: list[tuple[str, str]] = [
    ("URL", "<ingest URL, e.g. https://yobidashi.example.com/v1/zabbix>"),
    ("token", "<INGEST_TOKEN>"),
    ("HTTPProxy", ""),
    # Where people open an incident's page (the dialer's /incidents/), for the event menu.
    ("incident_page", "<optional: e.g. https://yobidashi.example.com/incidents>"),
    ("event_source", "{EVENT.SOURCE}"),
    ("event_id", "{EVENT.ID}"),
    ("event_value", "{EVENT.VALUE}"),
    ("event_update_status", "{EVENT.UPDATE.STATUS}"),
    ("event_status", "{EVENT.STATUS}"),
    ("event_name", "{EVENT.NAME}"),
    ("event_date", "{EVENT.DATE}"),
    ("event_time", "{EVENT.TIME}"),
    ("event_severity", "{EVENT.SEVERITY}"),
    ("event_nseverity", "{EVENT.NSEVERITY}"),
    ("event_ack_status", "{EVENT.ACK.STATUS}"),
    ("event_opdata", "{EVENT.OPDATA}"),
    ("event_tags", "{EVENT.TAGSJSON}"),
    ("trigger_id", "{TRIGGER.ID}"),
    ("trigger_name", "{TRIGGER.NAME}"),
    ("host", "{HOST.HOST}"),
    ("host_name", "{HOST.NAME}"),
    ("host_groups", "{TRIGGER.HOSTGROUP.NAME}"),
    ("recovery_event_id", "{EVENT.RECOVERY.ID}"),
    ("recovery_date", "{EVENT.RECOVERY.DATE}"),
    ("recovery_time", "{EVENT.RECOVERY.TIME}"),
    ("update_action", "{EVENT.UPDATE.ACTION}"),
    ("update_message", "{EVENT.UPDATE.MESSAGE}"),
    ("update_user", "{USER.FULLNAME}"),
    ("update_date", "{EVENT.UPDATE.DATE}"),
    ("update_time", "{EVENT.UPDATE.TIME}"),
    ("update_nseverity", "{EVENT.UPDATE.NSEVERITY}"),
    ("sendto", "{ALERT.SENDTO}"),
    ("subject", "{ALERT.SUBJECT}"),
    ("message", "{ALERT.MESSAGE}"),
    ("esc_history", "{ESC.HISTORY}"),
    ("zabbix_url", "{$ZABBIX.URL}"),
]

DESCRIPTION = """\
Yobidashi: on-call phone escalation. Rings the on-call engineer through Twilio, reads the problem
aloud, and writes their keypress back to Zabbix as an acknowledgement.

1. Set the URL parameter to your ingest endpoint (https://<host>/v1/zabbix) and token to its
   INGEST_TOKEN.
2. Give each on-call user a media of this type whose "Send to" is their phone number.
3. In an action for trigger events, send to those users through this media type for problem,
   recovery and update operations.
Details: deploy/zabbix/yobidashi/README.md in the Yobidashi repository."""

TEMPLATES = [
    (
        "PROBLEM",
        "Problem: {EVENT.NAME}",
        "Problem started at {EVENT.TIME} on {EVENT.DATE}\nProblem name: {EVENT.NAME}\n"
        "Host: {HOST.NAME}\nSeverity: {EVENT.SEVERITY}\nOperational data: {EVENT.OPDATA}\n"
        "Original problem ID: {EVENT.ID}\n",
    ),
    (
        "RECOVERY",
        "Resolved in {EVENT.DURATION}: {EVENT.NAME}",
        "Problem has been resolved at {EVENT.RECOVERY.TIME} on {EVENT.RECOVERY.DATE}\n"
        "Problem name: {EVENT.NAME}\nProblem duration: {EVENT.DURATION}\nHost: {HOST.NAME}\n"
        "Severity: {EVENT.SEVERITY}\nOriginal problem ID: {EVENT.ID}\n",
    ),
    (
        "UPDATE",
        "Updated problem in {EVENT.AGE}: {EVENT.NAME}",
        "{USER.FULLNAME} {EVENT.UPDATE.ACTION} problem at {EVENT.UPDATE.DATE} "
        "{EVENT.UPDATE.TIME}.\n{EVENT.UPDATE.MESSAGE}\n\nCurrent problem status is "
        "{EVENT.STATUS}, age is {EVENT.AGE}, acknowledged: {EVENT.ACK.STATUS}.\n",
    ),
]


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def export() -> dict[str, Any]:
    return {
        "zabbix_export": {
            "version": "6.0",
            "media_types": [
                {
                    "name": "Yobidashi",
                    "type": "WEBHOOK",
                    "parameters": [{"name": n, "value": v} for n, v in PARAMETERS],
                    # Unlimited parallel sessions: a storm must not queue behind one slow POST.
                    "max_sessions": "0",
                    # 503 from ingest means "retry": 10 tries, 30 s apart, cover a 5-minute outage.
                    "attempts": "10",
                    "attempt_interval": "30s",
                    "script": SCRIPT.read_text(),
                    "timeout": "10s",
                    # The problem's tags name our incident; its event menu links to the page.
                    "process_tags": "YES",
                    "show_event_menu": "YES",
                    "event_menu_url": "{EVENT.TAGS.__yobidashi_url}",
                    "event_menu_name": "Yobidashi",
                    "description": DESCRIPTION,
                    "message_templates": [
                        {
                            "event_source": "TRIGGERS",
                            "operation_mode": mode,
                            "subject": subject,
                            "message": message,
                        }
                        for mode, subject, message in TEMPLATES
                    ],
                }
            ],
        }
    }


def render() -> str:
    header = "# Generated by build_media_type.py from media_yobidashi.js; edit those, not this.\n"
    body = yaml.dump(export(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    return header + body


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if TARGET.read_text() == render() else 1)
    TARGET.write_text(render())
