"""MQTT topics and payload schemas: the wire contract shared by the bridge and the simulator.

Nothing here talks to a broker; it only names topics, normalizes tags and validates payloads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_PAYLOAD_BYTES = 4096
_TAG_STRIP = re.compile(r"[:\-\s]")
_TAG_VALID = re.compile(r"^[0-9A-F]{8,64}$")


class ScanResult(StrEnum):
    """The `result` a reader receives on its feedback topic."""

    UNKNOWN_TAG = "unknown_tag"
    NO_ACTIVE_GROUP = "no_active_group"
    DUPLICATE = "duplicate"
    SUPERVISOR_AUTHENTICATED = "supervisor_authenticated"
    CHECKED_IN = "checked_in"
    CHECKED_OUT = "checked_out"
    TRANSFERRED = "transferred"
    REJECTED = "rejected"


SUCCESS_RESULTS = frozenset(
    {
        ScanResult.SUPERVISOR_AUTHENTICATED,
        ScanResult.CHECKED_IN,
        ScanResult.CHECKED_OUT,
        ScanResult.TRANSFERRED,
        ScanResult.DUPLICATE,
    }
)


def normalize_tag(raw: str) -> str:
    """Strip `:`, `-` and white space and upper-case; raise ValueError if not 8-64 hex chars."""
    tag = _TAG_STRIP.sub("", raw).upper()
    if not _TAG_VALID.match(tag):
        msg = "not 8-64 hex characters"
        raise ValueError(msg)
    return tag


class Topics:
    """Topic names under one prefix (CONTRACT §3)."""

    def __init__(self, prefix: str = "phoenix") -> None:
        self.prefix = prefix.strip("/")

    def scan(self, device_id: str) -> str:
        return f"{self.prefix}/readers/{device_id}/scan"

    def feedback(self, device_id: str) -> str:
        return f"{self.prefix}/readers/{device_id}/feedback"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}/readers/{device_id}/status"

    @property
    def bridge_status(self) -> str:
        return f"{self.prefix}/bridge/status"

    @property
    def all_scans(self) -> str:
        return f"{self.prefix}/readers/+/scan"

    @property
    def all_statuses(self) -> str:
        return f"{self.prefix}/readers/+/status"

    def parse_reader_topic(self, topic: str) -> tuple[str, str] | None:
        """`prefix/readers/{id}/{kind}` → `(id, kind)`, or None for any other topic."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        n = len(head)
        if len(parts) != n + 3 or parts[:n] != head or parts[n] != "readers":
            return None
        return parts[n + 1], parts[n + 2]


ScanId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ScanPayload(BaseModel):
    """reader → bridge: one card read."""

    model_config = ConfigDict(extra="ignore", strict=True)

    scan_id: ScanId
    tag: str
    ts: datetime

    @field_validator("tag")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_tag(value)

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: object) -> datetime:
        if not isinstance(value, str):
            msg = "must be an RFC 3339 string"
            raise ValueError(msg)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            msg = "not an RFC 3339 timestamp"
            raise ValueError(msg) from None
        if parsed.tzinfo is None:
            msg = "RFC 3339 timestamp needs a time zone"
            raise ValueError(msg)
        return parsed.astimezone(UTC)


class FeedbackPayload(BaseModel):
    """bridge → reader: the result of one scan."""

    scan_id: str
    result: ScanResult
    message: str
    student_name: str | None = None


class StatusPayload(BaseModel):
    """reader → all (retained) and bridge → all: presence."""

    model_config = ConfigDict(extra="ignore")

    online: bool
    ts: datetime | None = None
    firmware: str | None = Field(default=None, max_length=64)


def format_ts(moment: datetime) -> str:
    """RFC 3339 with milliseconds and `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
