"""What a test talks to a running bridge with: readers, tokens, event streams; closed after.

Shared by the one-bridge `System` (tests/integration/conftest.py) and the several-instance
`Cluster` (tests/support/cluster.py), which differ only in where a stream connects.
"""

from __future__ import annotations

from edge_bridge.config import Settings
from edge_bridge.tokens import issue_token
from tests.support.broker import Broker
from tests.support.reader import TestReader
from tests.support.sse import SseStream


class TestClients:
    """A mixin for dataclasses with these fields; keeps what it opens, to close it."""

    __test__ = False  # not a pytest test class

    settings: Settings
    broker: Broker
    passwords: dict[str, str]
    _readers: list[TestReader]
    _streams: list[SseStream]

    def reader(self, device_id: str) -> TestReader:
        reader = TestReader(
            self.broker.host,
            self.broker.port,
            device_id=device_id,
            password=self.passwords[device_id],
            prefix=self.settings.mqtt_topic_prefix,
        )
        self._readers.append(reader)
        return reader

    def token(
        self, staff_id: int, *, ttl: float = 900, admin: bool = False, school_id: int = 1
    ) -> str:
        """An access token; `school_id` is the staff member's school (school 1 unless a test
        imported others)."""
        return issue_token(
            staff_id,
            school_id=school_id,
            secret=self.settings.jwt_secret,
            ttl_seconds=ttl,
            admin=admin,
        )

    def auth(self, staff_id: int, **options: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(staff_id, **options)}"}  # type: ignore[arg-type]

    def _open_stream(
        self,
        base_url: str,
        staff_id: int | None,
        *,
        token: str | None,
        headers: dict[str, str] | None,
        params: dict[str, str],
    ) -> SseStream:
        all_headers = dict(headers or {})
        if staff_id is not None or token is not None:
            all_headers["Authorization"] = f"Bearer {token or self.token(staff_id)}"  # type: ignore[arg-type]
        stream = SseStream(base_url + "/api/sse/events", headers=all_headers, params=params)
        self._streams.append(stream)
        return stream

    @staticmethod
    def _past_connected(stream: SseStream) -> SseStream:
        assert stream.status_code == 200, stream.body
        assert stream.next_event().event == "connected"
        return stream

    def _close_clients(self) -> None:
        for reader in self._readers:
            reader.close()
        for stream in self._streams:
            stream.close()
