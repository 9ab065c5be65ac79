"""MQTT topics and payload schemas: the wire contract shared by the bridge and the simulator.

Nothing here talks to a broker or a database; it names topics, normalizes tags, parses scan
payloads (`parse_scan`: bytes in, a valid scan or the reason it is refused out, whatever the
bytes) and builds the one feedback payload the bridge sends (`feedback_payload`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

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


def _storable_text(value: str) -> str:
    """Refuse control characters (NUL included) and lone surrogates: neither can be stored
    in a PostgreSQL text column or encoded as UTF-8 for the feedback."""
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        msg = "control characters or lone surrogates"
        raise ValueError(msg)
    return value


ScanId = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_storable_text)
]


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


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a scan payload was refused before any effect (with its scan_id when readable)."""

    reason: str
    field: str | None = None
    scan_id: str | None = None

    def __str__(self) -> str:
        return self.reason if self.field is None else f"{self.reason} field={self.field}"


def parse_scan(payload: bytes) -> ScanPayload | Rejection:
    """The validated scan, or why it is refused; never raises, whatever the bytes.

    `json.loads` raises more than `JSONDecodeError`: `RecursionError` for deep nesting,
    `ValueError` for an integer of more than 4300 digits, `UnicodeDecodeError` for bytes that
    are no UTF-8/16/32. Each is a refusal of this payload, not a failure of the caller.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection("oversize")
    try:
        document = json.loads(payload)
    except RecursionError:
        return Rejection("too_deep")
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, too many digits
        return Rejection("not_json")
    try:
        return ScanPayload.model_validate(document)
    except ValidationError as exc:
        return _rejection(exc, _readable_scan_id(document))
    except (RecursionError, ValueError, TypeError):
        return Rejection("invalid_payload", scan_id=_readable_scan_id(document))


def _readable_scan_id(document: object) -> str | None:
    """The document's scan_id when it could go back to the reader in a `rejected` feedback."""
    raw = document.get("scan_id") if isinstance(document, dict) else None
    if not isinstance(raw, str) or not 0 < len(raw) <= 64:
        return None
    try:
        return _storable_text(raw)
    except ValueError:
        return None


def _rejection(exc: ValidationError, scan_id: str | None) -> Rejection:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "payload"
    if field == "tag":
        reason = "bad_tag"
    elif first["type"] == "missing":
        reason = "missing_field"
    else:
        reason = "invalid_field"
    return Rejection(reason, field, scan_id)


def feedback_payload(
    scan_id: str, result: ScanResult, message: str, student_name: str | None = None
) -> bytes:
    """The bytes of one feedback message: the only place the bridge builds one."""
    feedback = FeedbackPayload(
        scan_id=scan_id, result=result, message=message, student_name=student_name
    )
    return feedback.model_dump_json(exclude_none=True).encode()
