"""`KvStore`: a typed view of a key-value bucket with compare-and-set, and `kv_key`."""

from __future__ import annotations

import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from pydantic import BaseModel

from yobidashi_common.bus.connection import Bus
from yobidashi_common.bus.metrics import BUS_JETSTREAM_REQUESTS

M = TypeVar("M", bound=BaseModel)


# Passes of `recent` over what was written while it read (one is almost always enough).
RECENT_PASSES = 3
# Enough for every person's bundle and every live incident a dialer touches in a busy hour.
LAST_SEEN_KEYS = 4096

# "=" is the escape character, so it is escaped too: two different parts never share a key.
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]")


def kv_key(*parts: str) -> str:
    """Join parts into a valid KV key; characters NATS forbids are escaped, dots separate parts.

    Distinct parts give distinct keys: a key is someone's state, and two sharing one would
    merge it."""
    return ".".join(_KEY_UNSAFE.sub(lambda m: f"={ord(m.group(0)):02X}", p) for p in parts)


class KvStore(Generic[M]):
    """A bucket whose values are one pydantic model, with compare-and-set updates."""

    def __init__(self, bus: Bus, bucket: str, model: type[M]) -> None:
        self.bus = bus
        self.bucket = bucket
        self.model = model
        # key -> (stored bytes, revision, when) as this process last read or wrote them: a guess
        # that `mutate`'s compare-and-set checks, and the view `seen_within` offers. Bytes, so
        # that no caller's in-place change to a model it was handed can alter what was stored.
        self._last_seen: OrderedDict[str, tuple[bytes, int, float]] = OrderedDict()

    def _remember(self, key: str, data: bytes, revision: int) -> None:
        self._last_seen[key] = (data, revision, time.monotonic())
        self._last_seen.move_to_end(key)
        if len(self._last_seen) > LAST_SEEN_KEYS:
            self._last_seen.popitem(last=False)

    def last_revision(self, key: str) -> int | None:
        """The revision of ``key`` as this process last read or wrote it (no request)."""
        seen = self._last_seen.get(key)
        return seen[1] if seen else None

    def seen_within(self, key: str, seconds: float) -> M | None:
        """The value of ``key`` as this process read or wrote it in the last ``seconds``, with no
        request; None if it has no view that recent. Another process may have written since:
        only for a caller whose decision a later compare-and-set or a later event corrects."""
        seen = self._last_seen.get(key)
        if seen is None or time.monotonic() - seen[2] > seconds:
            return None
        return self.model.model_validate_json(seen[0])

    async def get(self, key: str) -> tuple[M, int] | None:
        kv = await self.bus.kv(self.bucket)
        BUS_JETSTREAM_REQUESTS.labels("kv_get").inc()
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            self._last_seen.pop(key, None)
            return None
        if entry.value is None:
            self._last_seen.pop(key, None)
            return None
        revision = int(entry.revision or 0)
        self._remember(key, entry.value, revision)
        return self.model.model_validate_json(entry.value), revision

    async def create(self, key: str, value: M) -> int | None:
        """Store ``value`` only if ``key`` is absent. Returns the revision, or None if present."""
        kv = await self.bus.kv(self.bucket)
        data = value.model_dump_json().encode()
        BUS_JETSTREAM_REQUESTS.labels("kv_create").inc()
        try:
            revision = int(await kv.create(key, data))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        self._remember(key, data, revision)
        return revision

    async def update(self, key: str, value: M, revision: int) -> int | None:
        """Compare-and-set: store only if ``key`` is still at ``revision``; None on conflict."""
        kv = await self.bus.kv(self.bucket)
        data = value.model_dump_json().encode()
        BUS_JETSTREAM_REQUESTS.labels("kv_update").inc()
        try:
            stored = int(await kv.update(key, data, last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            self._last_seen.pop(key, None)
            return None
        self._remember(key, data, stored)
        return stored

    async def put(self, key: str, value: M) -> int:
        kv = await self.bus.kv(self.bucket)
        data = value.model_dump_json().encode()
        BUS_JETSTREAM_REQUESTS.labels("kv_put").inc()
        revision = int(await kv.put(key, data))
        self._remember(key, data, revision)
        return revision

    async def delete(self, key: str) -> None:
        kv = await self.bus.kv(self.bucket)
        self._last_seen.pop(key, None)
        BUS_JETSTREAM_REQUESTS.labels("kv_delete").inc()
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await kv.delete(key)

    async def keys(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix`` that has a message in the bucket, in one request
        (a key deleted since may be listed: its `get` is None).

        Not nats-py's ``KeyValue.keys()``: its watcher can report "no more keys" before it has
        counted the ones already on their way, and then lists none at all (seen in CI: every
        verified contact shown as unverified).
        """
        await self.bus.kv(self.bucket)  # the bucket exists
        head = f"$KV.{self.bucket}."
        BUS_JETSTREAM_REQUESTS.labels("stream_info").inc()
        info = await self.bus.js.stream_info(
            f"KV_{self.bucket}", subjects_filter=f"{head}{prefix}>"
        )
        return sorted(subject[len(head) :] for subject in info.state.subjects or {})

    async def recent(self, limit: int, scan: int = 2000) -> list[M]:
        """The most recently written values, newest first, at most ``limit``.

        Reads the bucket's stream backwards, so the first message seen for a key is its current
        value; deleted keys leave gaps or delete markers. At most ``scan`` sequence numbers are
        looked at per pass, which bounds the cost on a big bucket.

        A key rewritten while we read moves above where we started (its old message is gone
        from below): so once the first pass is done, what was written since is read too, or a
        busy key would be missing from the list altogether.
        """
        await self.bus.kv(self.bucket)  # the bucket exists
        stream = f"KV_{self.bucket}"
        latest: dict[str, tuple[int, bytes | None]] = {}  # subject -> newest (seq, value)
        done = 0  # every sequence up to here has been read (or lies below the scan)
        for _ in range(RECENT_PASSES):
            state = (await self.bus.js.stream_info(stream)).state
            if state.last_seq <= done:
                break
            floor = max(state.first_seq, state.last_seq - scan + 1, done + 1, 1)
            seq, live = state.last_seq, 0
            while seq >= floor and (done or live < limit):
                BUS_JETSTREAM_REQUESTS.labels("stream_get").inc()
                try:
                    msg = await self.bus.js.get_msg(stream, seq)
                except nats.js.errors.NotFoundError:
                    msg = None
                if msg is not None and msg.subject and seq > latest.get(msg.subject, (0,))[0]:
                    deleted = not msg.data or (msg.headers or {}).get("KV-Operation")
                    latest[msg.subject] = (seq, None if deleted else msg.data)
                    live += 0 if deleted else 1
                seq -= 1
            done = state.last_seq
        newest = sorted(latest.values(), key=lambda entry: entry[0], reverse=True)
        values = [self.model.model_validate_json(data) for _, data in newest if data is not None]
        return values[:limit]

    async def mutate(
        self, key: str, change: Callable[[M | None], M | None], attempts: int = 50
    ) -> M | None:
        """Apply ``change`` to the current value with compare-and-set, retrying on conflicts.

        ``change`` must be pure: it can run several times when writers race. Returning None
        leaves the stored value as it is.

        The first attempt starts from what this process last read or wrote, without asking the
        server: when nobody wrote since, one request does the whole change. A stale guess costs
        a failed compare-and-set and a read, never a wrong write, and a decision to leave the
        value as it is is only ever taken on a fresh read.
        """
        guess = self._last_seen.get(key)
        for _ in range(attempts):
            fresh = guess is None
            if guess is not None:
                current: tuple[M, int] | None = (self.model.model_validate_json(guess[0]), guess[1])
                guess = None
            else:
                current = await self.get(key)
            new = change(current[0] if current else None)
            if new is None:
                if not fresh:
                    continue
                return current[0] if current else None
            if current is None:
                if await self.create(key, new) is not None:
                    return new
            elif await self.update(key, new, current[1]) is not None:
                return new
        raise RuntimeError(f"too many concurrent writers on {self.bucket}/{key}")
