"""Integration fixtures: a real mosquitto, a real `edge-bridge serve`, a real database file."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings
from edge_ops.importer import import_data
from tests.factories import school_document
from tests.support.broker import Broker, broker_factory
from tests.support.clients import TestClients
from tests.support.cluster import DEFAULT_SHARED_GROUP, Cluster, build_instances, instance_username
from tests.support.reader import TestReader
from tests.support.server import BridgeServer
from tests.support.sse import SseStream

DEVICE_IDS = [device["id"] for device in school_document()["devices"]]


def far_day_end() -> str:
    """A DAY_END twelve hours from now in the school's (default) time zone."""
    return (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(hours=12)).strftime("%H:%M")


def server_base_env(settings: Settings) -> dict[str, str]:
    """The environment of a test's `edge-bridge serve`, all but MQTT_URL."""
    return {
        "DATABASE_URL": settings.database_url,
        "MQTT_TOPIC_PREFIX": settings.mqtt_topic_prefix,
        "JWT_SECRET": settings.jwt_secret,
        "LOG_LEVEL": "INFO",
        "SSE_HEARTBEAT_SECONDS": str(settings.sse_heartbeat_seconds),
        "SSE_CLIENT_BUFFER": str(settings.sse_client_buffer),
        "SCAN_DEBOUNCE_SECONDS": str(settings.scan_debounce_seconds),
        "JWT_ACCESS_TTL": str(settings.jwt_access_ttl),
        # Far from now, so no test meets the end of the school day by chance (CI may
        # run at 18:00 in Berlin); tests of the day end set their own.
        "DAY_END": far_day_end(),
    }


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    with broker_factory(tmp_path / "brokers") as start:
        yield start


@dataclass
class System(TestClients):
    """A running broker + bridge on the fixture school, and helpers to talk to them."""

    settings: Settings
    broker: Broker
    server: BridgeServer
    passwords: dict[str, str]
    engine: Engine
    _readers: list[TestReader] = field(default_factory=list)
    _streams: list[SseStream] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stream(
        self,
        staff_id: int | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> SseStream:
        return self._open_stream(
            self.base_url, staff_id, token=token, headers=headers, params=params
        )

    def connected_stream(self, staff_id: int, **params: str) -> SseStream:
        """A stream already past its `connected` frame."""
        return self._past_connected(self.stream(staff_id, **params))

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10.0)

    def close(self) -> None:
        self._close_clients()


@pytest.fixture
def make_system(
    tmp_path: Path,
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    start_broker: Callable[..., Broker],
) -> Iterator[Callable[..., System]]:
    """`make_system(**settings overrides)` → a running System; everything stops afterwards.

    `documents`: more import files (CONTRACT §7, e.g. other schools' from
    tests/support/schools.py), imported in order before the bridge starts; each of their
    devices gets MQTT credentials like the fixture school's.
    """
    systems: list[System] = []

    def make(
        *,
        persistence: bool = False,
        env: dict[str, str] | None = None,
        documents: Sequence[dict[str, Any]] = (),
        **overrides: object,
    ) -> System:
        settings = settings_factory(**overrides)
        for document in documents:
            import_data(school_engine, json.dumps(document).encode())
        imported = [
            device["id"] for document in documents for device in document.get("devices", [])
        ]
        devices = list(dict.fromkeys([*DEVICE_IDS, *imported]))
        passwords = {name: secrets.token_urlsafe(12) for name in ["edge-bridge", *devices]}
        broker = start_broker(
            prefix=settings.mqtt_topic_prefix, users=passwords, persistence=persistence
        )
        server_env = {
            **server_base_env(settings),
            "MQTT_URL": broker.url("edge-bridge", passwords["edge-bridge"]),
            **(env or {}),
        }
        directory = tmp_path / f"bridge-{len(systems)}"
        directory.mkdir()
        server = BridgeServer(directory, server_env)
        system = System(settings, broker, server, passwords, school_engine)
        systems.append(system)
        server.start(wait_ready=True)
        return system

    yield make
    for system in systems:
        system.server.kill()  # first: the streams' reader threads then see EOF at once
        system.close()


@pytest.fixture
def system(make_system: Callable[..., System]) -> System:
    """The default running system."""
    return make_system()


def add_readers(engine: Engine, count: int) -> list[str]:
    """Import `count` more active readers, alternating between rooms 1 and 2; their ids."""
    if count == 0:
        return []
    document = school_document()
    added = [
        {"id": f"reader-x{index}", "room_id": 1 + index % 2, "active": True}
        for index in range(count)
    ]
    document["devices"] = [*document["devices"], *added]
    import_data(engine, json.dumps(document).encode())
    return [device["id"] for device in added]


@pytest.fixture
def make_cluster(
    tmp_path: Path,
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    start_broker: Callable[..., Broker],
) -> Iterator[Callable[..., Cluster]]:
    """`make_cluster(n, *, extra_readers=…, shared_group=…, env=…, **settings)` → n instances.

    One database (the test's `database_url`), one broker, instance i as MQTT user and
    client id `bridge-<i>` (tests/support/cluster.py). Several instances need PostgreSQL
    (EDGE_TEST_POSTGRES_URL); on SQLite only n=1 runs, n>1 skips. `extra_readers` adds
    active readers `reader-x<k>` in the two rooms with an active group (`cluster.readers`).
    """
    clusters: list[Cluster] = []

    def make(
        count: int = 2,
        *,
        extra_readers: int = 0,
        persistence: bool = False,
        shared_group: str = DEFAULT_SHARED_GROUP,
        env: dict[str, str] | None = None,
        **overrides: object,
    ) -> Cluster:
        settings = settings_factory(**overrides)
        if count > 1 and settings.sqlite_path is not None:
            pytest.skip("several instances need PostgreSQL: set EDGE_TEST_POSTGRES_URL")
        usernames = [instance_username(index) for index in range(count)]
        devices = [*DEVICE_IDS, *add_readers(school_engine, extra_readers)]
        passwords = {name: secrets.token_urlsafe(12) for name in [*usernames, *devices]}
        broker = start_broker(
            prefix=settings.mqtt_topic_prefix,
            users=passwords,
            bridge_usernames=usernames,
            persistence=persistence,
        )
        base_env = {**server_base_env(settings), **(env or {})}
        cluster = Cluster(settings, broker, [], passwords, school_engine)
        clusters.append(cluster)
        cluster.instances.extend(
            build_instances(
                tmp_path / f"cluster-{len(clusters)}",
                count=count,
                base_env=base_env,
                broker=broker,
                passwords=passwords,
                shared_group=shared_group,
            )
        )
        for server in cluster.instances:  # listed first, so a failed start is still cleaned up
            server.start(wait_ready=True)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()
