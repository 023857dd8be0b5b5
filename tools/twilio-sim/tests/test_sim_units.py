"""Pure units: TwiML parsing, scenario books, settings, and the committed spec file."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from yobidashi_twilio_sim.models import Scenario
from yobidashi_twilio_sim.scenarios import ScenarioBook
from yobidashi_twilio_sim.settings import DEFAULT_ACCOUNT_SID, SimSettings
from yobidashi_twilio_sim.spec import SOURCE_SHA256, SPEC_FILE, load_spec
from yobidashi_twilio_sim.twiml import Gather, Hangup, Pause, Play, Redirect, Say, TwimlError, parse
from yobidashi_twilio_sim.util import format_number, rfc2822

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
FULL_SPEC = PACKAGE_ROOT.parents[2] / "shared" / "twilio-oai" / "twilio_api_v2010.json"


def test_parse_defaults_and_nesting() -> None:
    verbs = parse(
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say language="ja-JP" voice="Polly.Mizuki" loop="2">障害<break time="1s"/>です</Say>'
        "<Gather><Say>Press</Say><Pause/><Play>https://x.test/a.mp3</Play></Gather>"
        '<Redirect method="GET">next</Redirect><Hangup/></Response>'
    )
    assert verbs[0] == Say(text="障害です", voice="Polly.Mizuki", language="ja-JP", loop=2)
    gather = verbs[1]
    assert isinstance(gather, Gather)
    assert gather.action is None
    assert gather.method == "POST"
    assert gather.timeout == 5
    assert gather.finish_on_key == "#"
    assert gather.num_digits is None
    assert gather.action_on_empty_result is False
    assert gather.prompts == (Say(text="Press"), Pause(length=1), Play(url="https://x.test/a.mp3"))
    assert verbs[2] == Redirect(url="next", method="GET")
    assert verbs[3] == Hangup()
    assert parse("<Response/>") == []


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Say>unclosed</Response>",
        "<Reply><Say>x</Say></Reply>",
        "<Response><Speak>x</Speak></Response>",
        "<Response><Dial>+81312345678</Dial></Response>",
        "<Response><Gather><Hangup/></Gather></Response>",
        '<Response><Gather numDigits="0"/></Response>',
        '<Response><Gather finishOnKey="ab"/></Response>',
        '<Response><Redirect method="PUT">x</Redirect></Response>',
    ],
)
def test_parse_rejects_what_twilio_rejects(document: str) -> None:
    with pytest.raises(TwimlError) as info:
        parse(document)
    assert info.value.code == 12100


def test_scenario_lists_are_consumed_per_number_and_the_last_repeats() -> None:
    book = ScenarioBook(
        scenarios=json.dumps(
            {"+819011112222": [{"answer": "no-answer"}, {"answer": "human", "answer_after": 3}]}
        ),
        default_scenario='{"answer": "busy"}',
    )
    number = "+819011112222"
    assert book.next_for(number).answer == "no-answer"
    assert book.next_for(number) == Scenario(answer="human", answer_after=3)
    assert book.next_for(number).answer == "human"
    assert book.next_for("+819099999999").answer == "busy"
    book.set(number, Scenario(answer="failed"))
    assert book.next_for(number).answer == "failed"
    book.restore()
    assert book.next_for(number).answer == "no-answer"


def test_scenarios_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.json"
    path.write_text('{"+819011112222": {"answer": "machine"}}', encoding="utf-8")
    book = ScenarioBook(scenarios=str(path))
    assert book.next_for("+819011112222").answer == "machine"
    assert book.next_for("+819033334444") == Scenario()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_SIM_CPS", "7")
    monkeypatch.setenv("TWILIO_SIM_TIME_SCALE", "0.5")
    monkeypatch.setenv("TWILIO_SIM_MAX_CONCURRENT_CALLS", "3")
    settings = SimSettings()
    assert settings.cps == 7
    assert settings.time_scale == 0.5
    assert settings.max_concurrent_calls == 3
    assert settings.port == 8089
    assert settings.account_sid == DEFAULT_ACCOUNT_SID


def test_formatting_helpers() -> None:
    assert rfc2822(1283286988) == "Tue, 31 Aug 2010 20:36:28 +0000"
    assert format_number("+14158675309") == "(415) 867-5309"
    assert format_number("+819012345678") == "+819012345678"


def test_committed_spec_records_its_source() -> None:
    spec = load_spec()
    source = spec["info"]["x-yobidashi-trimmed-from"]
    assert source["sha256"] == SOURCE_SHA256
    assert set(spec["paths"]) == {
        "/2010-04-01/Accounts/{AccountSid}/Calls.json",
        "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json",
    }


@pytest.mark.skipif(not FULL_SPEC.exists(), reason="full twilio-oai spec not available here")
def test_committed_spec_is_what_trim_spec_produces() -> None:
    assert hashlib.sha256(FULL_SPEC.read_bytes()).hexdigest() == SOURCE_SHA256
    module_spec = importlib.util.spec_from_file_location(
        "trim_spec", PACKAGE_ROOT / "scripts" / "trim_spec.py"
    )
    assert module_spec is not None
    assert module_spec.loader is not None
    trim_spec = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(trim_spec)
    expected = trim_spec.render(trim_spec.trim(json.loads(FULL_SPEC.read_bytes()), SOURCE_SHA256))
    assert SPEC_FILE.read_text(encoding="utf-8") == expected
