"""MQTT over TLS (port 8883 in production): the documented listener, a bridge on `mqtts://`.

The broker runs the repository's mosquitto.conf plus the TLS listener section of
mosquitto/mosquitto-tls.conf.example, verbatim but for its port and certificate paths. The
certificates come from a CA the test makes with openssl; the bridge trusts it through
MQTT_CA_FILE, and a reader verifies the broker the same way.
"""

from __future__ import annotations

import json
import queue
import secrets
import ssl
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import Engine

from edge_bridge.config import Settings
from edge_bridge.wire import Topics, format_ts
from tests.integration.conftest import DEVICE_IDS
from tests.support.broker import Broker, free_port
from tests.support.certs import TlsFiles, make_tls_files
from tests.support.server import BridgeServer

pytestmark = pytest.mark.integration

TLS_EXAMPLE = Path(__file__).resolve().parents[2] / "mosquitto" / "mosquitto-tls.conf.example"
TLS_SECTION_MARKER = "# --- TLS listener"
MAX = "04A1B20000"  # student 401 Max Muster
WAIT_SECONDS = 10.0


def tls_listener_section(example: str, *, port: int, tls: TlsFiles) -> str:
    """The example's TLS listener block with the test's port and certificate files."""
    assert TLS_SECTION_MARKER in example, "mosquitto-tls.conf.example lost its TLS section"
    section = example[example.index(TLS_SECTION_MARKER) :]
    swaps = {
        "listener 8883": f"listener {port} 127.0.0.1",
        "/etc/mosquitto/certs/ca.crt": str(tls.ca_cert),
        "/etc/mosquitto/certs/broker.crt": str(tls.cert),
        "/etc/mosquitto/certs/broker.key": str(tls.key),
    }
    for old, new in swaps.items():
        assert old in section, f"mosquitto-tls.conf.example no longer contains {old!r}"
        section = section.replace(old, new)
    return "\n" + section


@contextmanager
def _tls_client(
    port: int, *, username: str, password: str, ca_file: Path | None
) -> Iterator[tuple[mqtt.Client, queue.Queue[Any]]]:
    """A connected paho client over TLS (system CAs when ca_file is None) and its inbox.

    Connection outcomes go to the inbox as ("connect", reason) or ("error", exception).
    """
    inbox: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username)
    client.username_pw_set(username, password)
    client.tls_set(ca_certs=str(ca_file) if ca_file else None)
    client.on_connect = lambda _c, _u, _f, reason, _p: inbox.put(("connect", reason))
    client.on_message = lambda _c, _u, message: inbox.put(("message", message.payload))
    try:
        client.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError) as exc:
        inbox.put(("error", exc))
    else:
        client.loop_start()
    try:
        yield client, inbox
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_scan_over_tls_gets_its_feedback_and_untrusted_clients_are_refused(
    tmp_path: Path,
    school_engine: Engine,
    settings_factory: Callable[..., Settings],
    start_broker: Callable[..., Broker],
) -> None:
    # Arrange: broker with the documented TLS listener; bridge on mqtts:// trusting our CA.
    tls = make_tls_files(tmp_path / "tls")
    tls_port = free_port()
    settings = settings_factory()
    passwords = {name: secrets.token_urlsafe(12) for name in ["edge-bridge", *DEVICE_IDS]}
    broker = start_broker(
        prefix=settings.mqtt_topic_prefix,
        users=passwords,
        extra_config=tls_listener_section(TLS_EXAMPLE.read_text(), port=tls_port, tls=tls),
    )
    directory = tmp_path / "bridge"
    directory.mkdir()
    server = BridgeServer(
        directory,
        {
            "DATABASE_URL": settings.database_url,
            "MQTT_URL": f"mqtts://edge-bridge:{passwords['edge-bridge']}@127.0.0.1:{tls_port}",
            "MQTT_CA_FILE": str(tls.ca_cert),
            "MQTT_TOPIC_PREFIX": settings.mqtt_topic_prefix,
            "JWT_SECRET": settings.jwt_secret,
        },
    )
    topics = Topics(settings.mqtt_topic_prefix)
    scan_id = uuid.uuid4().hex
    scan = {"scan_id": scan_id, "tag": MAX, "ts": format_ts(datetime.now(UTC))}

    try:
        # Act: the bridge becomes ready over TLS only; a reader scans over TLS.
        server.start(wait_ready=True)
        with _tls_client(
            tls_port, username="reader-101", password=passwords["reader-101"], ca_file=tls.ca_cert
        ) as (reader, inbox):
            assert inbox.get(timeout=WAIT_SECONDS) == ("connect", 0)
            reader.subscribe(topics.feedback("reader-101"), qos=1)
            reader.publish(topics.scan("reader-101"), json.dumps(scan), qos=1)
            kind, payload = inbox.get(timeout=WAIT_SECONDS)
        with _tls_client(
            tls_port, username="reader-101", password=passwords["reader-101"], ca_file=None
        ) as (_untrusting, untrusting_inbox):
            untrusted = untrusting_inbox.get(timeout=WAIT_SECONDS)
        with _tls_client(
            tls_port, username="reader-101", password="wrong-password", ca_file=tls.ca_cert
        ) as (_wrong, wrong_inbox):
            wrong_password = wrong_inbox.get(timeout=WAIT_SECONDS)
    finally:
        server.stop()

    # Assert: feedback over TLS; a client that does not trust the CA never gets a session,
    # and TLS does not replace the password check.
    assert kind == "message"
    feedback = json.loads(payload)
    assert (feedback["scan_id"], feedback["result"]) == (scan_id, "checked_in")
    assert untrusted[0] == "error"
    assert isinstance(untrusted[1], ssl.SSLCertVerificationError)
    assert wrong_password[0] == "connect"
    assert wrong_password[1] != 0
    assert f"listen socket on port {tls_port}" in broker.log_text()
