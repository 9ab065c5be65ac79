"""A minimal test reader: publishes scans as a device and waits for their feedback."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_bridge.wire import Topics, format_ts


class TestReader:
    """One MQTT connection as `device_id`; `scan()` returns the feedback dict."""

    __test__ = False  # not a pytest test class

    def __init__(self, host: str, port: int, *, device_id: str, password: str, prefix: str):
        self.device_id = device_id
        self.topics = Topics(prefix)
        self.feedback: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id)
        self.client.username_pw_set(device_id, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            msg = f"reader {device_id} not subscribed within 10 s"
            raise TimeoutError(msg)

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe(self.topics.feedback(self.device_id), qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: Any) -> None:
        try:
            body = json.loads(message.payload)
            self._queue(str(body.get("scan_id", ""))).put(body)
        except (ValueError, AttributeError):
            pass

    def _queue(self, scan_id: str) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self.feedback.setdefault(scan_id, queue.Queue())

    def publish_raw(self, payload: bytes, *, wait: bool = True) -> None:
        info = self.client.publish(self.topics.scan(self.device_id), payload, qos=1)
        if wait:
            info.wait_for_publish(5)

    def send(
        self,
        tag: str,
        *,
        scan_id: str | None = None,
        ts: datetime | None = None,
        wait: bool = True,
    ) -> str:
        """Publish one scan at QoS 1; with wait=False it may sit in paho's queue (offline)."""
        scan_id = scan_id or uuid.uuid4().hex
        body = {"scan_id": scan_id, "tag": tag, "ts": format_ts(ts or datetime.now(UTC))}
        self.publish_raw(json.dumps(body).encode(), wait=wait)
        return scan_id

    def has_feedback(self, scan_id: str) -> bool:
        return not self._queue(scan_id).empty()

    def wait_feedback(self, scan_id: str, timeout: float = 10.0) -> dict[str, Any]:
        try:
            return self._queue(scan_id).get(timeout=timeout)
        except queue.Empty:
            msg = f"no feedback for scan {scan_id} within {timeout} s"
            raise TimeoutError(msg) from None

    def scan(
        self,
        tag: str,
        *,
        scan_id: str | None = None,
        ts: datetime | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        return self.wait_feedback(self.send(tag, scan_id=scan_id, ts=ts), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
