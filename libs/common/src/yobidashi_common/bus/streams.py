"""Streams and buckets brought in line with their specs (`subjects`) on every start."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from yobidashi_common.subjects import BucketSpec, StreamSpec

_MANAGED_FIELDS = ("subjects", "max_age", "duplicate_window", "num_replicas", "description")


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int) -> None:
    """Create the stream, or bring its managed settings in line. Safe to run on every start."""
    wanted = spec.config(replicas)
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(wanted)
        return
    current = info.config
    if any(getattr(current, f) != getattr(wanted, f) for f in _MANAGED_FIELDS):
        await js.update_stream(wanted)


async def ensure_bucket(js: JetStreamContext, spec: BucketSpec, replicas: int) -> None:
    try:
        await js.key_value(spec.name)
    except NotFoundError:
        await js.create_key_value(spec.config(replicas))
