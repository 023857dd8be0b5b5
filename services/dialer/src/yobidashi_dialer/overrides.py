"""Runtime overrides: kept in a JetStream KV bucket, watched by every dialer replica.

One value per schedule (``schedule.<id>`` → `ScheduleOverrides`). Adding or removing an
override is one compare-and-set of that value, checked against what it held: two replicas
adding overlapping overrides at once cannot both win, and a writer that dies leaves either the
old value or the new one, never half of it. Each replica mirrors the bucket in memory through a
KV watch (and a full read now and then, in case a watch went quiet), so `current` is cheap
enough for every decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from datetime import datetime

import nats.errors
import nats.js.errors
from pydantic import ValidationError

from yobidashi_common.bus import Bus, BusUnavailable, KvStore, kv_key
from yobidashi_common.events import utcnow
from yobidashi_common.subjects import BucketSpec
from yobidashi_common.telemetry import get_logger
from yobidashi_dialer.background import BackgroundTask
from yobidashi_dialer.oncall.config import OnCallConfig
from yobidashi_dialer.oncall.overrides import (
    OverrideRequest,
    RuntimeOverride,
    ScheduleOverrides,
    accept,
    current,
)

log = get_logger(__name__)

OVERRIDES = BucketSpec(
    "yobidashi_overrides", "Runtime on-call overrides: one value per schedule.", history=5
)
_PREFIX = "schedule."


class OverrideBook:
    """The overrides every replica sees, and the only way to change them."""

    def __init__(
        self,
        bus: Bus,
        config: Callable[[], OnCallConfig],
        *,
        now: Callable[[], datetime] = utcnow,
        full_read_every: float = 30.0,
    ) -> None:
        self.bus = bus
        self.config = config
        self.now = now
        self.full_read_every = full_read_every
        self.store = KvStore(bus, OVERRIDES.name, ScheduleOverrides)
        self._by_key: dict[str, tuple[int, list[RuntimeOverride]]] = {}
        self.version = 0  # changes whenever the mirror does: the merged config is cached on it
        self._following = BackgroundTask(self._follow, "overrides-watch")

    # -- reading ---------------------------------------------------------------------------------

    def all(self) -> list[RuntimeOverride]:
        """Every override not over yet, soonest first."""
        return current((o for _, each in self._by_key.values() for o in each), self.now())

    def _mirror(self, key: str, revision: int, overrides: list[RuntimeOverride]) -> None:
        seen = self._by_key.get(key)
        if seen is not None and seen[0] >= revision:
            return  # an older value arriving late (watch after our own write)
        self._by_key[key] = (revision, overrides)
        self.version += 1

    def _forget(self, key: str, revision: int) -> None:
        seen = self._by_key.get(key)
        if seen is not None and seen[0] < revision:
            del self._by_key[key]
            self.version += 1

    async def read_all(self) -> None:
        for key in await self.store.keys():
            found = await self.store.get(key)
            if found is not None:
                self._mirror(key, found[1], found[0].overrides)

    # -- writing ---------------------------------------------------------------------------------

    async def add(self, request: OverrideRequest) -> RuntimeOverride:
        """Store the override, or raise `Rejected` (nothing stored) naming the field at fault."""
        new_id = f"ovr-{secrets.token_hex(4)}"
        key = kv_key("schedule", request.schedule)
        made: list[RuntimeOverride] = []

        def change(stored: ScheduleOverrides | None) -> ScheduleOverrides:
            # Runs again on a conflict, against the other writer's result: pure apart from
            # remembering the last answer.
            now = self.now()
            existing = stored.overrides if stored else []
            override = accept(self.config(), existing, request, now=now, new_id=new_id)
            made[:] = [override]
            return ScheduleOverrides(overrides=[*current(existing, now), override])

        await self._mutate(key, change)
        await self._refresh(key)
        log.info(
            "override.added",
            override=made[0].id,
            schedule=made[0].schedule,
            contact=made[0].contact,
            replaces=made[0].replaces,
            start=made[0].start.isoformat(),
            end=made[0].end.isoformat(),
        )
        return made[0]

    async def remove(self, override_id: str) -> RuntimeOverride | None:
        """Remove it; None if there is no such override (or it is over)."""
        await self.read_all()  # the one to remove may be younger than our mirror
        owner = next(
            (
                (key, o)
                for key, (_, each) in self._by_key.items()
                for o in each
                if o.id == override_id
            ),
            None,
        )
        if owner is None:
            return None
        key, found = owner

        def change(stored: ScheduleOverrides | None) -> ScheduleOverrides | None:
            if stored is None or not any(o.id == override_id for o in stored.overrides):
                return None
            kept = [o for o in stored.overrides if o.id != override_id]
            return ScheduleOverrides(overrides=current(kept, self.now()))

        await self._mutate(key, change)
        await self._refresh(key)
        log.info("override.removed", override=override_id, schedule=found.schedule)
        return found

    async def _mutate(
        self, key: str, change: Callable[[ScheduleOverrides | None], ScheduleOverrides | None]
    ) -> None:
        try:
            await self.store.mutate(key, change)
        except RuntimeError as exc:  # lost the compare-and-set race too often
            raise BusUnavailable(f"too many changes to {key} at once") from exc

    async def _refresh(self, key: str) -> None:
        # The writer sees its own write on its next decision, without waiting for the watch.
        found = await self.store.get(key)
        if found is not None:
            self._mirror(key, found[1], found[0].overrides)

    # -- following other replicas ---------------------------------------------------------------

    def start(self) -> None:
        self._following.start()

    async def stop(self) -> None:
        await self._following.stop()

    async def _follow(self) -> None:
        while True:
            try:
                await self.bus.wait_ready()
                await self.read_all()
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the mirror must keep following whatever went wrong
                log.warning("overrides.watch_failed", error=str(exc))
                await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        kv = await self.bus.kv(OVERRIDES.name)
        watcher = await kv.watchall()
        loop = asyncio.get_running_loop()
        full_read_at = loop.time() + self.full_read_every
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=self.full_read_every)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    entry = None
                if loop.time() >= full_read_at:
                    # A watch can go quiet without an error (a server restart): read it all.
                    await self.read_all()
                    full_read_at = loop.time() + self.full_read_every
                if entry is None or not entry.key.startswith(_PREFIX):
                    continue
                revision = int(entry.revision or 0)
                if entry.operation is not None or not entry.value:
                    self._forget(entry.key, revision)
                    continue
                try:
                    value = ScheduleOverrides.model_validate_json(entry.value)
                except ValidationError as exc:
                    log.error("overrides.unreadable", key=entry.key, error=str(exc))
                    continue
                self._mirror(entry.key, revision, value.overrides)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
