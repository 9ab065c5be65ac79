"""The ingest notices a dead MQTT driver, and no exception in a callback kills the client."""

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
    """Poll state the MQTT client changes; bounded by `seconds`."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - the client offers no event for these
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


def test_a_dead_mqtt_driver_makes_ingest_unhealthy(
    parts: tuple[Settings, Broker, dict[str, str]], school_engine: Engine
) -> None:
    settings, _broker, _passwords = parts

    async def scenario(ingest: Ingest) -> None:
        driver = ingest.mqtt.driver._task
        assert driver is not None
        driver.cancel()  # sabotage: what the driver's own catch-all never allows
        await asyncio.gather(driver, return_exceptions=True)

        assert ingest.connected.is_set()  # the connection itself is still up
        assert not ingest.healthy()

    _run(settings, school_engine, scenario)


def test_an_exception_escaping_paho_is_counted_and_the_client_reconnects_and_gets_it_again(
    parts: tuple[Settings, Broker, dict[str, str]], school_engine: Engine
) -> None:
    settings, broker, passwords = parts
    raised = threading.Event()
    redelivered = threading.Event()

    async def scenario(ingest: Ingest) -> None:
        ours = ingest.mqtt._client.on_message

        def boom_once(client: mqtt.Client, userdata: object, message: Any) -> None:
            if message.topic == ingest.topics.scan("reader-101"):
                if not raised.is_set():
                    raised.set()
                    raise RuntimeError("simulated bug in a callback")
                redelivered.set()
            ours(client, userdata, message)

        ingest.mqtt._client.on_message = boom_once  # sabotage: what our callback never allows
        first = ingest.mqtt.connection
        await asyncio.to_thread(
            _publish_until, raised.is_set, broker, passwords["reader-101"], broker.prefix
        )
        await _wait_until(lambda: redelivered.is_set() and ingest.healthy())

        assert ingest.mqtt.connection == first + 1  # the connection was dropped and renewed
        assert _counter(ingest, "edge_mqtt_messages_dropped", "callback_error") == 1

    _run(settings, school_engine, scenario)


def test_a_failure_inside_our_message_callback_is_logged_and_survived(
    parts: tuple[Settings, Broker, dict[str, str]],
    school_engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, broker, passwords = parts

    def broken_queue(_inbound: object) -> None:
        raise RuntimeError("simulated bug in the hand-over")

    async def scenario(ingest: Ingest) -> None:
        ingest.mqtt._enqueue = broken_queue  # type: ignore[method-assign]
        await asyncio.to_thread(
            _publish_until,
            lambda: "MQTT message hand-over failed" in caplog.text,
            broker,
            passwords["reader-101"],
            broker.prefix,
        )

        assert ingest.healthy()
        assert _counter(ingest, "edge_mqtt_messages_dropped", "callback_error") >= 1

    _run(settings, school_engine, scenario)


def _counter(ingest: Ingest, name: str, reason: str) -> float:
    value = ingest.metrics.registry.get_sample_value(f"{name}_total", {"reason": reason})
    return value or 0.0
