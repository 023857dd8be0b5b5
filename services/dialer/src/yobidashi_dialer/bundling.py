"""Calm in alert storms: one call per person and bundle group per window, and an hourly cap.

A person's calls for one bundle group (a route, or Zabbix-driven pages) share a record in KV:
when their last call was, which call requests wait to be bundled, how many calls they had in
the last hour, and whether they are on the phone right now. `arbitrate` decides, purely, what a
call request does:

- the first problem of a storm is called at once;
- problems that arrive within the window after a call wait, then ride one bundled call together;
- a redial of the same page is not held back by the window (it is the same problem);
- nobody is called while they are on the phone with us, or more often than the hourly cap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from yobidashi_common.bus import kv_key
from yobidashi_common.identity import ContactId
from yobidashi_dialer.store import CallTarget

HOUR = 3600.0
RECHECK_ON_THE_PHONE = 5.0  # while they are on a call, look again this often
TAKEN_KEEP = 1000
GROUPS_KEEP = 20


def bundle_key_for(who: ContactId, group: str) -> str:
    """The KV key of one person's calls in one bundle group: by identity, never by a masked
    number or a name. Hashed so that full numbers stay out of subject names."""
    return kv_key(hashlib.sha256(who.encode()).hexdigest(), group or "default")


class Waiting(BaseModel):
    model_config = ConfigDict(frozen=True)

    call_id: str  # the request's own id
    target: CallTarget


class BundleState(BaseModel):
    last_call_at: float | None = None
    live_call_id: str | None = None
    live_until: float = 0.0
    pending: list[Waiting] = Field(default_factory=list)
    taken: dict[str, str] = Field(default_factory=dict)  # request id -> the call that took it
    groups: dict[str, list[Waiting]] = Field(default_factory=dict)  # call -> what it covers
    calls: list[float] = Field(default_factory=list)  # call times within the last hour


@dataclass(frozen=True)
class Decision:
    action: Literal["call", "wait", "taken"]
    # call: the requests this call covers (ours last); taken: the call that covered ours
    requests: tuple[Waiting, ...] = ()
    call_id: str | None = None
    until: float = 0.0  # wait: when to try again
    reason: str = ""


def arbitrate(
    state: BundleState | None,
    me: Waiting,
    *,
    now: float,
    window: float,
    cap: int,
    redial: bool,
    live_ttl: float,
) -> tuple[BundleState, Decision]:
    state = state.model_copy(deep=True) if state else BundleState()
    if me.call_id in state.taken:
        return state, Decision("taken", call_id=state.taken[me.call_id])
    state.calls = [t for t in state.calls if t > now - HOUR]
    if state.live_call_id is not None and state.live_until <= now:
        state.live_call_id = None  # its final status never came; do not wait forever
    hold: tuple[float, str] | None = None
    if state.live_call_id is not None:
        hold = (now + RECHECK_ON_THE_PHONE, "on_the_phone")
    elif cap and len(state.calls) >= cap:
        hold = (state.calls[0] + HOUR, "hourly_cap")
    elif (
        not redial
        and window > 0
        and state.last_call_at is not None
        and now < state.last_call_at + window
    ):
        hold = (state.last_call_at + window, "bundle_window")
    if hold is not None:
        if all(w.call_id != me.call_id for w in state.pending):
            state.pending.append(me)
        return state, Decision("wait", until=hold[0], reason=hold[1])
    requests = (*(w for w in state.pending if w.call_id != me.call_id), me)
    state.pending = []
    state.last_call_at = now
    state.calls.append(now)
    state.live_call_id = me.call_id
    state.live_until = now + live_ttl
    for waiting in requests:
        state.taken[waiting.call_id] = me.call_id
    state.groups[me.call_id] = list(requests)
    if len(state.taken) > TAKEN_KEEP:
        state.taken = dict(list(state.taken.items())[-TAKEN_KEEP:])
    if len(state.groups) > GROUPS_KEEP:
        state.groups = dict(list(state.groups.items())[-GROUPS_KEEP:])
    return state, Decision("call", requests=requests, call_id=me.call_id)


def call_placed(state: BundleState | None, call_id: str, at: float) -> BundleState | None:
    """Count the window from when the call was really placed, not from the decision to place
    it: waiting for the CPS budget must not shorten the gap the person gets."""
    if state is None or state.live_call_id != call_id or (state.last_call_at or 0) >= at:
        return None
    return state.model_copy(update={"last_call_at": at})


def call_over(state: BundleState | None, call_id: str) -> BundleState | None:
    """The call reached its final status: they are off the phone. None: nothing to change."""
    if state is None or state.live_call_id != call_id:
        return None
    return state.model_copy(update={"live_call_id": None})
