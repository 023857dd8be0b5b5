"""Bundling and the hourly cap, pure."""

from __future__ import annotations

from yobidashi_dialer.bundling import (
    BundleState,
    Decision,
    Waiting,
    arbitrate,
    call_over,
    call_placed,
)
from yobidashi_dialer.store import CallTarget


def req(n: int) -> Waiting:
    return Waiting(
        call_id=f"req{n}", target=CallTarget(problem_key=f"zabbix:{n}", page_id="z1", attempt=1)
    )


def run(state: BundleState | None, n: int, now: float, *, window: float = 30, cap: int = 0,
        redial: bool = False) -> tuple[BundleState, Decision]:  # fmt: skip
    return arbitrate(state, req(n), now=now, window=window, cap=cap, redial=redial, live_ttl=600)


def test_the_first_problem_of_a_storm_is_called_at_once() -> None:
    state, decision = run(None, 1, now=100)
    assert decision.action == "call"
    assert [w.call_id for w in decision.requests] == ["req1"]
    assert state.live_call_id == "req1"


def test_problems_within_the_window_wait_then_ride_one_call() -> None:
    state, _ = run(None, 1, now=100)
    state = call_over(state, "req1") or state
    for n in range(2, 6):
        state, decision = run(state, n, now=100 + n)
        assert decision == Decision("wait", until=130, reason="bundle_window")
    state, decision = run(state, 3, now=130)  # the first to come back after the window leads
    assert decision.action == "call"
    assert sorted(w.call_id for w in decision.requests) == ["req2", "req3", "req4", "req5"]
    for n in (2, 4, 5):
        _, later = run(state, n, now=131)
        assert later == Decision("taken", call_id="req3")


def test_one_call_per_window() -> None:
    state, _ = run(None, 1, now=0)
    state = call_over(state, "req1") or state
    calls = []
    for t in range(1, 200):
        state, decision = run(state, 1000 + t, now=float(t))
        if decision.action == "call":
            calls.append(t)
            state = call_over(state, decision.call_id or "") or state
        else:
            # requests come back when told to; here every waiting one is retried each second
            for waiting in list(state.pending):
                if t >= decision.until:
                    state, d2 = arbitrate(state, waiting, now=float(t), window=30, cap=0,
                                          redial=False, live_ttl=600)  # fmt: skip
                    if d2.action == "call":
                        calls.append(t)
                        state = call_over(state, d2.call_id or "") or state
    assert all(b - a >= 30 for a, b in zip([0, *calls], calls, strict=False))


def test_the_window_counts_from_when_the_call_was_really_placed() -> None:
    state, _ = run(None, 1, now=100)
    state = call_placed(state, "req1", 103.5) or state  # the create waited for the CPS budget
    state = call_over(state, "req1") or state
    _, decision = run(state, 2, now=131)
    assert decision == Decision("wait", until=133.5, reason="bundle_window")


def test_nobody_is_called_while_on_the_phone_with_us() -> None:
    state, _ = run(None, 1, now=0)
    state, decision = run(state, 2, now=40)
    assert decision.reason == "on_the_phone"
    state = call_over(state, "req1") or state
    _, decision = run(state, 2, now=45)
    assert decision.action == "call"


def test_a_lost_final_status_does_not_hold_calls_forever() -> None:
    state, _ = run(None, 1, now=0)
    _, decision = run(state, 2, now=601)
    assert decision.action == "call"


def test_the_hourly_cap_holds_calls_until_the_oldest_is_an_hour_old() -> None:
    state = None
    for n in range(3):
        state, decision = run(state, n, now=n * 100.0, window=0, cap=3)
        assert decision.action == "call"
        state = call_over(state, decision.call_id or "") or state
    state, decision = run(state, 9, now=400, window=0, cap=3)
    assert decision == Decision("wait", until=3600, reason="hourly_cap")
    _, decision = run(state, 9, now=3600, window=0, cap=3)
    assert decision.action == "call"


def test_a_redial_is_not_held_by_the_window() -> None:
    state, _ = run(None, 1, now=0)
    state = call_over(state, "req1") or state
    _, decision = run(state, 7, now=5, redial=True)
    assert decision.action == "call"


def test_window_zero_never_bundles() -> None:
    state, _ = run(None, 1, now=0, window=0)
    state = call_over(state, "req1") or state
    _, decision = run(state, 2, now=0.5, window=0)
    assert decision.action == "call"
