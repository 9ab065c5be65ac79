"""Several real `edge-bridge serve` processes on one database and one broker (issue 12).

Instance `i` logs in to the broker as MQTT user `bridge-<i>` (= its client id, since the
broker runs with `use_username_as_clientid`: two instances with one username would take
each other's session), with its own password, `INSTANCE_ID=bridge-<i>` and, unless told
otherwise, `MQTT_SHARED_GROUP=edge`. The ACL grants every `bridge-<i>` the bridge's rights.

    cluster = make_cluster(2)                  # fixture in tests/integration/conftest.py
    stream = cluster.connected_stream(1, staff_id=1)   # a dashboard on instance 1
    cluster.reader("dev-101").scan(tag)        # shared subscription: any instance answers
    cluster.kill(0); cluster.start(0)          # SIGKILL / start again on the same port
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings
from tests.support.broker import Broker
from tests.support.clients import TestClients
from tests.support.reader import TestReader
from tests.support.server import BridgeServer
from tests.support.sse import SseStream

DEFAULT_SHARED_GROUP = "edge"


def instance_username(index: int) -> str:
    """The MQTT username, client id and INSTANCE_ID of instance `index`."""
    return f"bridge-{index}"


@dataclass
class Cluster(TestClients):
    """N bridge processes on one database and one broker, and helpers to talk to them."""

    settings: Settings
    broker: Broker
    instances: list[BridgeServer]
    passwords: dict[str, str]
    engine: Engine
    _readers: list[TestReader] = field(default_factory=list)
    _streams: list[SseStream] = field(default_factory=list)

    def base_url(self, instance: int) -> str:
        return self.instances[instance].base_url

    def stream(
        self,
        instance: int,
        staff_id: int | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> SseStream:
        """An SSE stream on instance `instance` (not yet read)."""
        return self._open_stream(
            self.base_url(instance), staff_id, token=token, headers=headers, params=params
        )

    def connected_stream(self, instance: int, staff_id: int, **params: str) -> SseStream:
        """A stream on `instance` already past its `connected` frame."""
        return self._past_connected(self.stream(instance, staff_id, **params))

    def http(self, instance: int) -> httpx.Client:
        return httpx.Client(base_url=self.base_url(instance), timeout=10.0)

    def kill(self, instance: int) -> None:
        """SIGKILL: a crash. Its MQTT session stays on the broker until it expires."""
        self.instances[instance].kill()

    def stop(self, instance: int, timeout_seconds: float = 20.0) -> float:
        """SIGTERM and wait (a graceful roll); returns how long the exit took."""
        return self.instances[instance].stop(timeout_seconds)

    def start(self, instance: int, *, wait_ready: bool = True) -> BridgeServer:
        """Start instance `instance` again, same port, same client id and session."""
        return self.instances[instance].start(wait_ready=wait_ready)

    def log_text(self, instance: int) -> str:
        return self.instances[instance].log_text()

    def close(self) -> None:
        for server in self.instances:
            server.kill()  # first: the streams' reader threads then see EOF at once
        self._close_clients()


def build_instances(
    directory: Path,
    *,
    count: int,
    base_env: dict[str, str],
    broker: Broker,
    passwords: dict[str, str],
    shared_group: str = DEFAULT_SHARED_GROUP,
) -> list[BridgeServer]:
    """`count` bridge processes (not started yet), instance i as MQTT user `bridge-<i>`."""
    servers: list[BridgeServer] = []
    for index in range(count):
        username = instance_username(index)
        env = {
            **base_env,
            "MQTT_URL": broker.url(username, passwords[username]),
            "MQTT_CLIENT_ID": username,
            "MQTT_SHARED_GROUP": shared_group,
            "INSTANCE_ID": username,
        }
        instance_dir = directory / username
        instance_dir.mkdir(parents=True)
        servers.append(BridgeServer(instance_dir, env))
    return servers
