"""`KvStore`: a typed view of a key-value bucket with compare-and-set, and `kv_key`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from pydantic import BaseModel

from yobidashi_common.bus.connection import Bus

M = TypeVar("M", bound=BaseModel)


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

    async def get(self, key: str) -> tuple[M, int] | None:
        kv = await self.bus.kv(self.bucket)
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return self.model.model_validate_json(entry.value), int(entry.revision or 0)

    async def create(self, key: str, value: M) -> int | None:
        """Store ``value`` only if ``key`` is absent. Returns the revision, or None if present."""
        kv = await self.bus.kv(self.bucket)
        try:
            return int(await kv.create(key, value.model_dump_json().encode()))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def update(self, key: str, value: M, revision: int) -> int | None:
        """Compare-and-set: store only if ``key`` is still at ``revision``; None on conflict."""
        kv = await self.bus.kv(self.bucket)
        try:
            return int(await kv.update(key, value.model_dump_json().encode(), last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def put(self, key: str, value: M) -> int:
        kv = await self.bus.kv(self.bucket)
        return int(await kv.put(key, value.model_dump_json().encode()))

    async def delete(self, key: str) -> None:
        kv = await self.bus.kv(self.bucket)
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await kv.delete(key)

    async def recent(self, limit: int, scan: int = 2000) -> list[M]:
        """The most recently written values, newest first, at most ``limit``.

        Reads the bucket's stream backwards, so the first message seen for a key is its current
        value; deleted keys leave gaps or delete markers. At most ``scan`` sequence numbers are
        looked at, which bounds the cost on a big bucket.
        """
        await self.bus.kv(self.bucket)  # the bucket exists
        stream = f"KV_{self.bucket}"
        state = (await self.bus.js.stream_info(stream)).state
        seq, first = state.last_seq, max(state.first_seq, state.last_seq - scan + 1, 1)
        found: list[M] = []
        seen: set[str] = set()
        while seq >= first and len(found) < limit:
            try:
                msg = await self.bus.js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                msg = None
            seq -= 1
            if msg is None or not msg.subject or msg.subject in seen:
                continue
            seen.add(msg.subject)
            if msg.data and not (msg.headers or {}).get("KV-Operation"):  # not deleted
                found.append(self.model.model_validate_json(msg.data))
        return found

    async def mutate(
        self, key: str, change: Callable[[M | None], M | None], attempts: int = 50
    ) -> M | None:
        """Apply ``change`` to the current value with compare-and-set, retrying on conflicts.

        ``change`` must be pure: it can run several times when writers race. Returning None
        leaves the stored value as it is.
        """
        for _ in range(attempts):
            current = await self.get(key)
            new = change(current[0] if current else None)
            if new is None:
                return current[0] if current else None
            if current is None:
                if await self.create(key, new) is not None:
                    return new
            elif await self.update(key, new, current[1]) is not None:
                return new
        raise RuntimeError(f"too many concurrent writers on {self.bucket}/{key}")
