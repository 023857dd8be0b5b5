"""Contact verification, the pure part: what counts as verified, and what the gauges count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from yobidashi_dialer.core.decide import Rules
from yobidashi_dialer.oncall import load_text
from yobidashi_dialer.verification import (
    Attempt,
    ContactState,
    code_hash,
    is_verified,
    outcome_of,
    spoken_code,
    unverified_counts,
)

NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
RULES = Rules(
    oncall=load_text("""\
contacts:
  - {id: tanaka, name: 田中, phones: ["+819044440001"]}
  - {id: sato, name: 佐藤, phones: ["+819044440002"]}
schedules:
  - id: primary
    layers:
      - rotation: {type: weekly, start: 2026-01-05T09:00, members: [tanaka]}
  - id: secondary
    layers:
      - rotation: {type: weekly, start: 2026-01-05T09:00, members: [sato]}
""")
)


def state(identity: str, number: str, verified: bool) -> ContactState:
    return ContactState(
        identity=identity,
        number=number,
        verified_at=NOW if verified else None,
        last_outcome="verified" if verified else "wrong_code",
        last_at=NOW,
    )


def test_verified_means_this_number_was_keyed_in() -> None:
    assert is_verified(state("tanaka", "+819044440001", True), "+819044440001")
    assert not is_verified(state("tanaka", "+819044440001", False), "+819044440001")
    # The YAML's number changed since: the new one has not been checked.
    assert not is_verified(state("tanaka", "+819044440001", True), "+819044449999")
    assert not is_verified(None, "+819044440001")


def test_the_gauges_count_unverified_contacts_and_the_on_call_ones_among_them() -> None:
    assert unverified_counts(RULES, {}, NOW) == (["tanaka", "sato"], 2)
    states = {"tanaka": state("tanaka", "+819044440001", True)}
    assert unverified_counts(RULES, states, NOW) == (["sato"], 1)
    states["sato"] = state("sato", "+819044440002", True)
    assert unverified_counts(RULES, states, NOW) == ([], 0)


def test_an_attempt_left_calling_too_long_reads_as_no_answer() -> None:
    attempt = Attempt(
        id="v-1",
        identity="tanaka",
        number="+819044440001",
        language="ja",
        code_hash=code_hash("v-1", "123456"),
        started_at=NOW,
    )
    limit = timedelta(minutes=11)
    assert outcome_of(attempt, NOW + timedelta(minutes=5), limit) == "calling"
    assert outcome_of(attempt, NOW + timedelta(minutes=12), limit) == "no_answer"
    done = attempt.model_copy(update={"outcome": "verified"})
    assert outcome_of(done, NOW + timedelta(days=1), limit) == "verified"


def test_the_code_is_read_digit_by_digit_and_stored_only_as_a_salted_hash() -> None:
    assert spoken_code("043210", "ja") == "0、4、3、2、1、0"
    assert spoken_code("043210", "en") == "0, 4, 3, 2, 1, 0"
    assert code_hash("v-1", "043210") != code_hash("v-2", "043210")
    assert "043210" not in code_hash("v-1", "043210")
