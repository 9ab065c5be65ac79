"""`parse_scan` turns any bytes into a valid scan or a reason, and never raises; one feedback
builder makes every feedback payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_bridge.wire import (
    MAX_PAYLOAD_BYTES,
    Rejection,
    ScanPayload,
    ScanResult,
    feedback_payload,
    parse_scan,
)

VALID = {"scan_id": "s-1", "tag": "04:a1:b2:c3:00", "ts": "2026-03-02T13:45:00.123Z"}


def _padded(size: int) -> bytes:
    """A valid scan padded with an ignored field to exactly `size` bytes."""
    base = json.dumps({**VALID, "pad": ""}).encode()
    payload = json.dumps({**VALID, "pad": "x" * (size - len(base))}).encode()
    assert len(payload) == size
    return payload


def test_a_valid_scan_is_parsed_and_its_tag_normalized() -> None:
    parsed = parse_scan(json.dumps(VALID).encode())

    assert isinstance(parsed, ScanPayload)
    assert (parsed.scan_id, parsed.tag) == ("s-1", "04A1B2C300")
    assert parsed.ts == datetime(2026, 3, 2, 13, 45, 0, 123000, tzinfo=UTC)


def test_a_payload_of_nested_brackets_is_refused_as_too_deep() -> None:
    assert parse_scan(b"[" * MAX_PAYLOAD_BYTES) == Rejection("too_deep")


def test_deep_nesting_inside_a_scan_is_refused_as_too_deep_without_its_scan_id() -> None:
    depth = 1500
    payload = b'{"scan_id": "s-1", "x": ' + b"[" * depth + b"]" * depth + b"}"

    rejection = parse_scan(payload)

    assert rejection == Rejection("too_deep")
    assert rejection.scan_id is None  # json.loads gave up before any field could be read


def test_a_number_of_thousands_of_digits_is_an_invalid_field_not_a_crash() -> None:
    payload = b'{"scan_id": "s-1", "tag": "04A1B2C300", "ts": ' + b"9" * 4000 + b"}"

    assert parse_scan(payload) == Rejection("invalid_field", "ts", "s-1")


def test_a_float_that_overflows_is_refused() -> None:
    payload = json.dumps({**VALID, "ts": 1e400}).encode()  # serialized as Infinity

    assert parse_scan(payload) == Rejection("invalid_field", "ts", "s-1")


@pytest.mark.parametrize("scan_id", ["a\ud800b", "a\x00b", "a\x1bb"])
def test_a_scan_id_with_a_lone_surrogate_or_control_character_is_refused(scan_id: str) -> None:
    payload = json.dumps({**VALID, "scan_id": scan_id}).encode()  # \\u escapes: valid JSON

    assert parse_scan(payload) == Rejection("invalid_field", "scan_id", None)


def test_bytes_that_are_no_unicode_are_not_json() -> None:
    assert parse_scan(b'{"scan_id": "\xff\xfe"}') == Rejection("not_json")


def test_a_nul_byte_in_the_payload_is_not_json() -> None:
    assert parse_scan(json.dumps(VALID).encode() + b"\x00") == Rejection("not_json")


@pytest.mark.parametrize(
    ("size", "accepted"),
    [(MAX_PAYLOAD_BYTES - 1, True), (MAX_PAYLOAD_BYTES, True), (MAX_PAYLOAD_BYTES + 1, False)],
)
def test_the_size_limit_is_4_kib_inclusive(size: int, accepted: bool) -> None:
    parsed = parse_scan(_padded(size))

    assert isinstance(parsed, ScanPayload) is accepted
    if not accepted:
        assert parsed == Rejection("oversize")


def test_a_bad_tag_names_the_field_and_keeps_the_scan_id() -> None:
    parsed = parse_scan(json.dumps({**VALID, "tag": "XYZ"}).encode())

    assert parsed == Rejection("bad_tag", "tag", "s-1")
    assert str(parsed) == "bad_tag field=tag"


def test_a_missing_field_is_named() -> None:
    assert parse_scan(b'{"scan_id": "s-1", "tag": "04A1B2C300"}') == Rejection(
        "missing_field", "ts", "s-1"
    )


@given(payload=st.binary(max_size=MAX_PAYLOAD_BYTES + 10))
def test_any_bytes_give_a_scan_or_a_rejection(payload: bytes) -> None:
    assert isinstance(parse_scan(payload), ScanPayload | Rejection)


@given(document=st.recursive(st.none() | st.integers() | st.text(), st.lists, max_leaves=50))
def test_any_json_gives_a_scan_or_a_rejection(document: object) -> None:
    payload = json.dumps({"scan_id": "s", "tag": document, "ts": document}).encode()

    assert isinstance(parse_scan(payload), ScanPayload | Rejection)


def test_feedback_leaves_out_a_missing_student_name() -> None:
    rejected = feedback_payload("s-1", ScanResult.REJECTED, "Scan ungültig")
    checked_in = feedback_payload("s-2", ScanResult.CHECKED_IN, "Hallo Max!", "Max Muster")

    assert json.loads(rejected) == {
        "scan_id": "s-1",
        "result": "rejected",
        "message": "Scan ungültig",
    }
    assert json.loads(checked_in)["student_name"] == "Max Muster"
    assert "Scan ungültig".encode() in rejected  # UTF-8, as before
