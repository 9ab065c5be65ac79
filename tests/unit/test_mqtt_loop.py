"""The loop driver's rules that need no socket: publishes wait out a connect in its thread,
and a paho step that raises is counted and gives the connection up."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_bridge.mqtt_loop import LoopDriver


class RecordingPaho(mqtt.Client):
    """A real paho client that records publishes instead of queueing them."""

    def __init__(self) -> None:
        super().__init__(CallbackAPIVersion.VERSION2)
        self.published: list[str] = []

    def publish(self, topic: str, *_args: object, **_kwargs: object) -> mqtt.MQTTMessageInfo:  # type: ignore[override]
        self.published.append(topic)
        return mqtt.MQTTMessageInfo(0)


def _driver() -> tuple[LoopDriver, RecordingPaho, list[str], list[bool]]:
    paho = RecordingPaho()
    failures: list[str] = []
    broken: list[bool] = []
    driver = LoopDriver(paho, on_failure=failures.append, on_broken=lambda: broken.append(True))
    return driver, paho, failures, broken


def test_a_publish_made_while_reconnecting_waits_for_the_connect_thread() -> None:
    driver, paho, _failures, _broken = _driver()

    driver._connecting = True  # reconnect() runs in its worker thread
    driver.publish("a", b"1")
    during = list(paho.published)
    driver._release_held()  # the thread is done
    driver.publish("b", b"2")

    assert during == []
    assert paho.published == ["a", "b"]


def test_an_exception_escaping_a_paho_step_is_counted_and_gives_up_the_connection() -> None:
    driver, _paho, failures, broken = _driver()

    def broken_step() -> None:
        raise RuntimeError("simulated bug in a callback")

    driver._step("read", broken_step)

    assert failures == ["read"]
    assert broken == [True]  # the owner marks itself disconnected
    assert driver._broken  # the driver reconnects on its next turn
