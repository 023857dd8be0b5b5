"""Two people are never one: identity by config id or full number, never by a masked form.

Found when the product was tried: 090-1111-5678 and 090-2222-5678 both mask to
``+81 90-****-5678``, and 0.1 keyed Zabbix-driven callees by that, so their problems were
bundled into one call to one of them. These tests drive the real decision and bundling code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from yobidashi_common.events import (
    AlertEvent,
    AlertStatus,
    ContactRef,
    KeyAction,
    KeyPressed,
    ProblemRef,
    Severity,
)
from yobidashi_common.identity import ContactId
from yobidashi_common.phone import E164, mask, normalize
from yobidashi_dialer.bundling import BundleState, Waiting, arbitrate, bundle_key_for
from yobidashi_dialer.core.decide import Rules, decide
from yobidashi_dialer.core.model import (
    AlertArrived,
    Contact,
    Incident,
    KeyPress,
    PlaceCall,
    TimerFired,
)
from yobidashi_dialer.oncall import ConfigError, load_text
from yobidashi_dialer.oncall.config import OnCallConfig
from yobidashi_dialer.store import CallTarget, DialRequest

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
A = E164("+819011115678")  # 090-1111-5678
B = E164("+819022225678")  # 090-2222-5678
LEGACY = json.loads((Path(__file__).parent / "data" / "legacy_0_1" / "state.json").read_text())


def alert(event_id: int, sendto: str) -> AlertEvent:
    return AlertEvent(
        source_event_id=str(event_id),
        problem_key=f"zabbix:{event_id}",
        dedup_key=f"zabbix.{event_id}.problem.1",
        status=AlertStatus.PROBLEM,
        severity=Severity.HIGH,
        title=f"problem {event_id}",
        host="web01",
        received_at=T0,
        sendto=sendto,
    )


def placed_call(event_id: int, sendto: str, rules: Rules) -> PlaceCall:
    transition = decide(None, AlertArrived(alert=alert(event_id, sendto)), T0, rules)
    [call] = [c for c in transition.commands if isinstance(c, PlaceCall)]
    return call


class People:
    """Per-person bundle records, keyed as the dial worker keys them."""

    def __init__(self) -> None:
        self.records: dict[str, BundleState] = {}

    def request(self, call: PlaceCall, now: float, cap: int = 0) -> str:
        key = bundle_key_for(call.contact.id, call.bundle)
        me = Waiting(
            call_id=call.call_id,
            target=CallTarget(problem_key=call.call_id, page_id=call.page_id, attempt=1),
        )
        state, decision = arbitrate(
            self.records.get(key),
            me,
            now=now,
            window=call.bundle_window,
            cap=cap,
            redial=call.redial,
            live_ttl=600,
        )
        self.records[key] = state
        return decision.action


def assert_never_one_person(first: PlaceCall, second: PlaceCall) -> None:
    assert first.contact.number != second.contact.number
    assert first.contact.id != second.contact.id, "one contact identity"
    assert bundle_key_for(first.contact.id, first.bundle) != bundle_key_for(
        second.contact.id, second.bundle
    ), "one bundle"
    people = People()
    assert people.request(first, now=0.0, cap=1) == "call"
    # The first person is now on the phone with us and has used up an hourly cap of one; the
    # second is neither held because of that nor folded into their call.
    assert people.request(second, now=1.0, cap=1) == "call", "one busy state or hourly count"


# -- the type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "display", ["+81 90-****-5678", "phone:+81 90-****-5678", "田中 太郎", "+819011115678", ""]
)
def test_a_masked_number_or_a_display_name_is_not_a_contact_id(display: str) -> None:
    with pytest.raises(ValueError, match="contact id"):
        ContactId(display)


def test_a_contact_id_is_a_config_id_or_the_full_number() -> None:
    assert ContactId("tanaka").config_id == "tanaka"
    assert ContactId.of_number(A) == "tel:+819011115678"
    assert ContactId.of_number(A).config_id is None
    contact = Contact(id=ContactId.of_number(A), number=A)
    assert contact.masked_number == mask(A) == "+81 90-****-5678"
    assert contact.ref().id == "tel:+819011115678"
    assert contact.ref().identity == contact.id


# -- the scenario that was found ------------------------------------------------------------


def test_two_numbers_that_mask_alike_are_two_people() -> None:
    assert mask(A) == mask(B)
    assert_never_one_person(placed_call(1, "090-1111-5678", Rules()), placed_call(2, B, Rules()))


def test_a_second_problem_for_a_waits_for_a_and_never_rides_bs_call() -> None:
    rules = Rules(bundle_window=timedelta(seconds=30))
    people = People()
    a1, b1, a2 = placed_call(1, A, rules), placed_call(2, B, rules), placed_call(3, A, rules)
    assert people.request(a1, now=0.0) == "call"
    assert people.request(b1, now=3.0) == "call"
    assert people.request(a2, now=6.0) == "wait"
    a_key = bundle_key_for(a1.contact.id, a1.bundle)
    b_key = bundle_key_for(b1.contact.id, b1.bundle)
    assert [w.call_id for w in people.records[a_key].pending] == [a2.call_id]
    assert people.records[b_key].pending == []
    assert [w.call_id for w in people.records[b_key].groups[b1.call_id]] == [b1.call_id]


# -- properties -----------------------------------------------------------------------------

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _example(region: str) -> phonenumbers.PhoneNumber | None:
    for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
        found = phonenumbers.example_number_for_type(region, kind)
        if found is not None:
            return found
    return None


def _valid(country_code: int | None, national: str) -> E164 | None:
    try:
        return normalize(f"+{country_code}{national}", "ZZ")
    except ValueError:
        return None


@st.composite
def numbers_that_mask_alike(draw: st.DrawFn) -> tuple[E164, E164]:
    """Two valid numbers of one region that differ only in digits the mask hides."""
    region = draw(st.sampled_from(REGIONS))
    example = _example(region)
    if example is None or len(str(example.national_number)) <= 6:
        reject()
    national = str(example.national_number)
    hidden = range(2, len(national) - 4)  # mask() keeps the first two and the last four
    position = draw(st.sampled_from(hidden))
    digit = draw(st.sampled_from([d for d in "0123456789" if d != national[position]]))
    other = national[:position] + digit + national[position + 1 :]
    first, second = _valid(example.country_code, national), _valid(example.country_code, other)
    if first is None or second is None:
        reject()
    assume(mask(first) == mask(second))  # (a changed digit can change the grouping)
    return first, second


@st.composite
def any_two_numbers(draw: st.DrawFn) -> tuple[E164, E164]:
    """Two distinct valid numbers from any regions (the same one included)."""
    numbers = []
    for _ in range(2):
        example = _example(draw(st.sampled_from(REGIONS)))
        if example is None:
            reject()
        national = str(example.national_number)
        tail = draw(st.text("0123456789", min_size=2, max_size=2))
        number = _valid(example.country_code, national[:-2] + tail)
        if number is None:
            reject()
        numbers.append(number)
    assume(numbers[0] != numbers[1])
    return numbers[0], numbers[1]


PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


@PROPERTY
@given(st.one_of(numbers_that_mask_alike(), any_two_numbers()))
def test_distinct_numbers_never_share_an_identity_bundle_busy_state_or_count(
    pair: tuple[E164, E164],
) -> None:
    first, second = pair
    assert_never_one_person(placed_call(1, first, Rules()), placed_call(2, second, Rules()))


def _two_contacts(first: E164, second: E164) -> OnCallConfig:
    return OnCallConfig.model_validate(
        {
            "contacts": [
                {"id": "tanaka", "name": "田中", "phones": [first]},
                {"id": "tanaka2", "name": "田中", "phones": [second]},  # the same name, too
            ]
        }
    )


@PROPERTY
@given(numbers_that_mask_alike())
def test_config_contacts_whose_phones_mask_alike_stay_two_people(pair: tuple[E164, E164]) -> None:
    first, second = pair
    rules = Rules(oncall=_two_contacts(first, second))
    a, b = placed_call(1, first, rules), placed_call(2, second, rules)
    assert (a.contact.id, b.contact.id) == ("tanaka", "tanaka2")
    assert_never_one_person(a, b)


def test_one_number_for_two_config_contacts_is_refused_by_field() -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(
            """\
contacts:
  - {id: tanaka, name: 田中, phones: ["090-1111-5678"]}
  - {id: sato, name: 佐藤, phones: ["+81 90 1111 5678"]}
"""
        )
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("line 3: contacts.1.phones.0:")
    assert "+81 90-****-5678 is also the number of 'tanaka'" in problem
    assert "1111" not in problem, "the error shows the masked form only"


# -- acknowledgements -----------------------------------------------------------------------


def key_press(contact: ContactRef, problem_key: str) -> KeyPress:
    return KeyPress(
        key=KeyPressed(
            id="k1",
            call_id="c1",
            call_sid="CA1",
            problems=[ProblemRef(problem_key=problem_key, source_event_id="1")],
            contact=contact,
            digit="1",
            action=KeyAction.ACKNOWLEDGE,
            at=T0,
        )
    )


def test_the_acknowledgement_records_who_pressed_by_identity() -> None:
    start = decide(None, AlertArrived(alert=alert(1, B)), T0, Rules()).state
    b = Contact(id=ContactId.of_number(B), number=B).ref()
    acked = decide(start, key_press(b, "zabbix:1"), T0, Rules()).state
    assert acked is not None
    assert acked.acked_by_id == "tel:+819022225678"
    assert acked.acked_by == "+81 90-****-5678"  # the display form, for people only
    legacy = ContactRef(id="phone:+81 90-****-5678", masked_number="+81 90-****-5678")
    from_legacy = decide(start, key_press(legacy, "zabbix:1"), T0, Rules()).state
    assert from_legacy is not None
    assert from_legacy.acked_by_id is None, "a masked-number id identifies nobody"


# -- state from 0.1 -------------------------------------------------------------------------


def legacy_incident(name: str) -> Incident:
    return Incident.model_validate(LEGACY[name]["incident"])


def test_0_1_state_loads_with_each_person_rebuilt_from_their_full_number() -> None:
    stored = [LEGACY[name]["incident"]["pages"][0]["contact"]["id"] for name in ("a1", "b1")]
    assert stored == ["phone:+81 90-****-5678"] * 2, "0.1 merged them"
    a1, b1, a2 = (legacy_incident(n).pages[0].contact for n in ("a1", "b1", "a2"))
    assert (a1.id, b1.id, a2.id) == ("tel:+819011115678", "tel:+819022225678", a1.id)
    requests = [DialRequest.model_validate(LEGACY[n]["dial_request"]) for n in ("a1", "b1")]
    assert [r.contact.id for r in requests] == [a1.id, b1.id]
    assert bundle_key_for(requests[0].contact.id, requests[0].bundle) != bundle_key_for(
        requests[1].contact.id, requests[1].bundle
    )


def test_a_0_1_incident_open_across_the_upgrade_still_rings_its_own_person() -> None:
    incident = legacy_incident("b1")
    page = incident.pages[0]
    page.status = page.status.WAITING  # its first call went unanswered under 0.1
    fired = TimerFired(token=f"{page.call_id}-redial", purpose="redial", page_id="z1", attempt=1)
    transition = decide(incident, fired, T0 + timedelta(minutes=1), Rules())
    [redial] = [c for c in transition.commands if isinstance(c, PlaceCall)]
    assert redial.contact.number == B
    assert redial.contact.id == "tel:+819022225678"


def test_a_0_1_step_timer_still_moves_its_escalation_on() -> None:
    incident = legacy_incident("policy")
    token: Any = LEGACY["policy"]["step_timer_token"]
    assert len(token.split("-")[0]) == 12, "0.1's digest"
    rules = Rules(
        oncall=load_text(
            """\
contacts:
  - {id: tanaka, name: 田中, phones: ["+819011110001"]}
  - {id: sato, name: 佐藤, phones: ["+819011110002"]}
"""
        )
    )
    page = incident.pages[0]
    page.status = page.status.UNREACHED
    later = T0 + timedelta(minutes=2)
    transition = decide(incident, TimerFired(token=token, purpose="step"), later, rules)
    [step_two] = [c for c in transition.commands if isinstance(c, PlaceCall)]
    assert step_two.contact.id == "sato"
