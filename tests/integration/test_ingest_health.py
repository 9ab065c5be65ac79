"""The ingest notices a dead paho network thread, and its own callbacks never kill it."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings
from edge_bridge.ingest import Ingest
from edge_bridge.presence import Presence
from edge_bridge.store import Store
from edge_bridge.wire import Topics
from tests.support.broker import Broker

pytestmark = pytest.mark.integration


async def _wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll state owned by another thread (paho's); bounded by `seconds`."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - no event exists for a thread's death
            await asyncio.sleep(0.02)


def _publish_scan(broker: Broker, password: str, prefix: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reader-101")
    client.username_pw_set("reader-101", password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(Topics(prefix).scan("reader-101"), b"{}", qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _publish_until(
    happened: Callable[[], bool], broker: Broker, password: str, prefix: str
) -> None:
    """Publish a scan until `happened()`: the bridge's subscription may still be on its way
    when the connection is up, and a scan published before it exists reaches nobody."""
    for _ in range(10):
        _publish_scan(broker, password, prefix)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if happened():
                return
            time.sleep(0.02)
    msg = "the bridge never received a scan"
    raise TimeoutError(msg)


@pytest.fixture
def parts(
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    start_broker: Callable[..., Broker],
) -> tuple[Settings, Broker, dict[str, str]]:
    passwords = {"edge-bridge": secrets.token_urlsafe(8), "reader-101": secrets.token_urlsafe(8)}
    prefix = settings_factory().mqtt_topic_prefix
    broker = start_broker(prefix=prefix, users=passwords)
    settings = settings_factory(mqtt_url=broker.url("edge-bridge", passwords["edge-bridge"]))
    return settings, broker, passwords


def _run(settings: Settings, engine: Engine, scenario: Callable[[Ingest], Any]) -> None:
    async def main() -> None:
        store = Store(engine)
        ingest = Ingest(settings, store=store, presence=Presence(store))
        await ingest.start()
        try:
            await _wait_until(ingest.healthy)
            await scenario(ingest)
        finally:
            await ingest.stop()
            store.close()

    asyncio.run(main())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_exception_escaping_a_paho_callback_makes_ingest_unhealthy(
    parts: tuple[Settings, Broker, dict[str, str]], school_engine: Engine
) -> None:
    settings, broker, passwords = parts
    died = threading.Event()

    def boom(*_args: object) -> None:
        died.set()
        raise RuntimeError("simulated bug in a callback")

    async def scenario(ingest: Ingest) -> None:
        ingest.mqtt._client.on_message = boom  # sabotage: what our own callback never allows
        await asyncio.to_thread(
            _publish_until, died.is_set, broker, passwords["reader-101"], broker.prefix
        )
        await _wait_until(lambda: not ingest.healthy())

        assert ingest.connected.is_set()  # paho still believes it is connected
        assert not ingest.healthy()

    _run(settings, school_engine, scenario)


def test_a_failure_inside_our_message_callback_is_logged_and_survived(
    parts: tuple[Settings, Broker, dict[str, str]],
    school_engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, broker, passwords = parts

    async def scenario(ingest: Ingest) -> None:
        closed_loop = asyncio.new_event_loop()
        closed_loop.close()
        ingest.mqtt._loop = closed_loop  # the hand-over now raises inside the callback
        await asyncio.to_thread(
            _publish_until,
            lambda: "MQTT message hand-over failed" in caplog.text,
            broker,
            passwords["reader-101"],
            broker.prefix,
        )

        assert ingest.healthy()

    _run(settings, school_engine, scenario)
