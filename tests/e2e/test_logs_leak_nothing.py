"""Logs leak nothing: a full scenario through the real processes (Zabbix 6.0 → ingest → dialer →
Twilio simulator → acker → Zabbix API), with hostile requests mixed in, then every log file is
searched for secrets and phone numbers.

The scenario: a request with a wrong token, one with the right token in the wrong scheme, a
forged Twilio callback carrying the callee's number, alerts whose fields contain every secret
and number (accepted and refused), and a real problem that rings the on-call phone, where 1 is
pressed and the acknowledgement lands in Zabbix. The logs must then be non-empty JSON lines
that do carry the masked numbers (so that a pass means the numbers were masked, not absent),
and none of: the ingest token, the Twilio auth token, the acker's Zabbix API token and
password, or the number in any of its spellings.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from yobidashi_harness import payloads
from yobidashi_harness.zabbix_dev import DevInstance
from yobidashi_testing.e2e import INGEST_TOKEN, e2e_stack

pytestmark = [pytest.mark.e2e, pytest.mark.zabbix, pytest.mark.integration]

# The on-call user's media in Zabbix is the national form; the dialer rings the E.164 one.
NATIONAL = "090-1234-5678"
E164 = "+819012345678"
SPELLINGS = [
    E164,
    "819012345678",
    "09012345678",
    NATIONAL,
    "090 1234 5678",
    "+81 90-1234-5678",
    "+81 90 1234 5678",
    "+81-90-1234-5678",
    "9012345678",
    "90-1234-5678",
]
ACKER_PASSWORD = "e2e-acker-Pw-7c1f0e9a2b"
MASKED = {"+81 90-****-5678", "09*-****-5678"}
PRESS_1: dict[str, Any] = {
    "answer": "human",
    "answer_after": 2,
    "digits": [{"after": 0.5, "keys": "1"}],
}


def log_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, f"{path.name} is empty"
    parsed = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name}:{number} is not JSON: {line[:200]}") from None
        assert isinstance(record, dict)
        assert record.get("event"), f"{path.name}:{number} has no event: {line[:200]}"
        parsed.append(record)
    return parsed


async def test_secrets_and_numbers_never_reach_the_logs(
    zabbix_dev: DevInstance, tmp_path: Path
) -> None:
    async with e2e_stack(
        zabbix_dev,
        tmp_path,
        prefix="e2e-logs",
        phones=[NATIONAL],
        # Given beside the API token (which wins), so the acker holds a password to leak too.
        acker_env={"ZABBIX_PASSWORD": ACKER_PASSWORD},
    ) as e2e:
        secrets = {
            "ingest token": INGEST_TOKEN,
            "Twilio auth token": e2e.sim.auth_token,
            "Zabbix API token": e2e.scenario.acker_token.token,
            "Zabbix password": ACKER_PASSWORD,
        }
        everything = " ".join([*secrets.values(), *SPELLINGS])
        await e2e.sim.scenario(E164, PRESS_1)
        ingest = f"{e2e.ingest.url}/v1/zabbix"
        right = {"Authorization": f"Bearer {INGEST_TOKEN}"}
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            hostile = [
                # a wrong token, and the right one in the wrong scheme
                await http.post(
                    ingest,
                    json=payloads.problem(9101, sendto=E164),
                    headers={"Authorization": "Bearer not-the-token-000"},
                ),
                await http.post(
                    ingest,
                    json=payloads.problem(9102, sendto=NATIONAL),
                    headers={"Authorization": f"Basic {INGEST_TOKEN}"},
                ),
                # the secrets and numbers inside fields: refused (bad id), refused (no
                # severity), and accepted (an update to a problem nobody is paged for)
                await http.post(
                    ingest, json=payloads.problem(everything, sendto=everything), headers=right
                ),
                await http.post(
                    ingest,
                    json=payloads.problem(
                        9103, sendto=E164, event_nseverity=None, event_severity=everything
                    ),
                    headers=right,
                ),
                await http.post(
                    ingest,
                    json=payloads.update(
                        9104,
                        **dict.fromkeys(("user", "message", "name", "host"), everything),
                        sendto=NATIONAL,
                    ),
                    headers=right,
                ),
                # a forged Twilio callback, carrying the number and the auth token
                await http.post(
                    f"{e2e.dialer.url}/twilio/voice/gather?call=feedfacecafe-z1-1&round=1",
                    data={
                        "CallSid": "CA" + "0" * 32,
                        "From": E164,
                        "To": NATIONAL,
                        "Digits": "1",
                        "AuthToken": e2e.sim.auth_token,
                    },
                    headers={"X-Twilio-Signature": INGEST_TOKEN},
                ),
            ]
        assert [r.status_code for r in hostile] == [401, 401, 422, 422, 202, 403]

        # The real thing: a problem rings the phone, 1 is pressed, Zabbix gets the ack.
        eventid = await asyncio.to_thread(e2e.fire)
        [call] = await e2e.sim.wait_calls(E164, 1, "Zabbix's webhook to ring the phone")
        await e2e.sim.wait_status(call["sid"], "completed")
        [ack] = await e2e.wait_acknowledged(eventid)
        assert "+81 90-****-5678" in ack["message"]
        assert E164 not in ack["message"]
        logs = {proc.command: proc.log_file for proc in (e2e.ingest, e2e.dialer, e2e.acker)}
    # The processes have stopped (SIGTERM): their logs are complete.

    found_masked: set[str] = set()
    events: dict[str, set[str]] = {}
    for service, path in logs.items():
        records = log_lines(path)
        events[service] = {r["event"] for r in records}
        text = path.read_text(encoding="utf-8")
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} is in {path.name}"
        for spelling in SPELLINGS:
            assert spelling not in text, f"{spelling!r} is in {path.name}"
        found_masked |= {m for m in MASKED if m in text}
    # The logs talk about what happened, with the numbers masked.
    assert found_masked == MASKED, f"masked numbers missing from the logs: {MASKED - found_masked}"
    assert {"ingest.accepted", "ingest.rejected"} <= events["yobidashi-ingest"]
    assert {"callback.rejected", "call.key"} <= events["yobidashi-dialer"]
    assert "acker.written" in events["yobidashi-acker"]
