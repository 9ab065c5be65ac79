"""edge_bridge/ingest.py's last resort: a bug escaping a batch leaves no message unacknowledged.

No broker and no database: the worker's batch step runs against a fake store and directory,
and the MQTT client's `ack` and `publish` are recorded instead of sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge_bridge.config import Settings, load_settings
from edge_bridge.ingest import Ingest
from edge_bridge.models import utcnow
from edge_bridge.mqtt_client import Inbound
from tests.conftest import TEST_JWT_SECRET

KNOWN, UNKNOWN = "reader-101", "reader-gone"


class FakeStore:
    """Commits nothing and says so: the write "succeeds" (the bug comes after it)."""

    async def write(self, _work: Callable[..., Any]) -> None:
        return None


class FakePresence:
    """A directory with one active reader."""

    def __init__(self) -> None:
        self.rejections: list[str] = []

    async def device(self, device_id: str) -> SimpleNamespace | None:
        return SimpleNamespace(active=True, school_id=1) if device_id == KNOWN else None

    def rejected(self, device_id: str, **_options: object) -> None:
        self.rejections.append(device_id)

    def seen(self, *_args: object) -> None:
        return None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        secret_file=tmp_path / "jwt_secret",
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        jwt_secret=TEST_JWT_SECRET,
        mqtt_topic_prefix="school",
    )


def _inbound(topic: str, payload: bytes, mid: int) -> Inbound:
    return Inbound(topic, payload, mid, 1, 0.0, utcnow(), 0)


def _scan(device_id: str, scan_id: str, mid: int) -> Inbound:
    document = {"scan_id": scan_id, "tag": "04A1B20000", "ts": "2026-11-26T08:00:00Z"}
    return _inbound(f"school/readers/{device_id}/scan", json.dumps(document).encode(), mid)


def test_a_bug_escaping_a_batch_rejects_and_acknowledges_every_unanswered_message(
    settings: Settings,
) -> None:
    presence = FakePresence()
    ingest = Ingest(settings, store=FakeStore(), presence=presence)  # type: ignore[arg-type]
    acked: list[int] = []
    published: list[tuple[str, dict[str, object]]] = []

    def ack(inbound: Inbound) -> None:
        inbound.handled = True
        acked.append(inbound.mid)

    def publish(topic: str, payload: bytes) -> None:
        published.append((topic, json.loads(payload)))

    def bug(_pending: object) -> None:
        raise RuntimeError("simulated bug after the commit")

    ingest.mqtt.ack = ack  # type: ignore[method-assign]
    ingest.mqtt.publish = publish  # type: ignore[method-assign]
    ingest._finish = bug  # type: ignore[method-assign]
    batch = [
        _scan(KNOWN, "s-1", 1),
        _inbound(f"school/readers/{KNOWN}/scan", b"not json", 2),  # rejected on its own
        _scan(UNKNOWN, "s-3", 3),  # rejected on its own, unanswered: an unknown reader
        _scan(KNOWN, "s-4", 4),
    ]

    asyncio.run(ingest._process_until_done(batch))

    rejections = ingest.metrics.scan_rejections
    assert sorted(acked) == [1, 2, 3, 4]  # each exactly once
    assert all(inbound.handled for inbound in batch)
    assert [(payload["scan_id"], payload["result"]) for _topic, payload in published] == [
        ("", "rejected"),  # the unreadable one
        ("s-1", "rejected"),
        ("s-4", "rejected"),
    ]
    assert {topic for topic, _payload in published} == {f"school/readers/{KNOWN}/feedback"}
    assert rejections.labels("internal_error")._value.get() == 2
    assert presence.rejections == [KNOWN] * 3
    assert not ingest.database_unreachable
