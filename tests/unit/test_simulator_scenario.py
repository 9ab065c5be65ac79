"""The simulator's plan and its expected-result model (simulator/scenario.py)."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import pytest

from edge_bridge.wire import ScanResult
from simulator.data import SimData, build_import_file, data_from_import
from simulator.scenario import (
    ACCEPTED_RESULTS,
    ModelStay,
    PlanOptions,
    PresenceModel,
    ScanKind,
    ScenarioError,
    build_plan,
)

MAX_TAG = "04A1B2C3D4"
EMMA_TAG = "04A1B2C3D5"
STAFF_TAG = "A1B2C3D4"


def make_school() -> SimData:
    """Two rooms with an active group (1, 2) and one without (3), a reader in each."""
    return data_from_import(
        {
            "rooms": [
                {"id": 1, "name": "Raum 101"},
                {"id": 2, "name": "Turnhalle"},
                {"id": 3, "name": "Raum 103"},
            ],
            "staff": [{"id": 1, "name": "Frau Schmidt", "tag": STAFF_TAG}],
            "students": [
                {"id": 456, "first_name": "Max", "last_name": "Muster", "tag": MAX_TAG},
                {"id": 457, "first_name": "Emma", "last_name": "Klein", "tag": EMMA_TAG},
            ],
            "devices": [
                {"id": "reader-101", "room_id": 1},
                {"id": "reader-gym", "room_id": 2},
                {"id": "reader-103", "room_id": 3},
                {"id": "reader-old", "room_id": 1, "active": False},
            ],
            "active_groups": [
                {"id": 123, "name": "Fußball AG", "room_id": 1},
                {"id": 124, "name": "Turnen", "room_id": 2},
            ],
        }
    )


def make_model(**kwargs: object) -> PresenceModel:
    return PresenceModel.from_data(make_school(), debounce_seconds=3.0, **kwargs)  # type: ignore[arg-type]


def big_school() -> SimData:
    return data_from_import(build_import_file(rooms=4, students=15, seed=3, password="x"))


# ---- the model follows the CONTRACT §3 table ---------------------------------------------


def test_first_scan_of_a_student_checks_them_in_to_the_readers_room() -> None:
    model = make_model()

    result = model.expect("reader-101", MAX_TAG, 0.0)

    assert result == ScanResult.CHECKED_IN
    assert model.present == {"456": "1"}


def test_scan_in_the_same_room_after_the_debounce_checks_the_student_out() -> None:
    model = make_model()
    model.expect("reader-101", MAX_TAG, 0.0)

    result = model.expect("reader-101", MAX_TAG, 10.0)

    assert result == ScanResult.CHECKED_OUT
    assert model.present == {}


def test_scan_in_another_room_transfers_the_student() -> None:
    model = make_model()
    model.expect("reader-101", MAX_TAG, 0.0)

    result = model.expect("reader-gym", MAX_TAG, 1.0)

    assert result == ScanResult.TRANSFERRED
    assert model.present == {"456": "2"}


def test_the_model_keeps_each_students_stays_in_order_for_the_attendance_record() -> None:
    model = make_model()
    model.expect("reader-101", MAX_TAG, 0.0)
    model.expect("reader-gym", MAX_TAG, 5.0)
    model.expect("reader-gym", MAX_TAG, 5.5)  # a double tap changes nothing

    model.expect("reader-gym", MAX_TAG, 20.0)

    assert model.stays == {"456": (ModelStay("1", 0.0, 5.0), ModelStay("2", 5.0, 20.0))}


def test_second_tap_within_debounce_on_the_same_reader_is_a_duplicate() -> None:
    model = make_model()
    model.expect("reader-101", MAX_TAG, 0.0)

    result = model.expect("reader-101", MAX_TAG, 0.5)

    assert result == ScanResult.DUPLICATE
    assert model.present == {"456": "1"}


def test_debounce_counts_from_the_last_accepted_scan_not_from_the_duplicate() -> None:
    model = make_model()
    model.expect("reader-101", MAX_TAG, 0.0)
    model.expect("reader-101", MAX_TAG, 2.5)

    result = model.expect("reader-101", MAX_TAG, 3.5)

    assert result == ScanResult.CHECKED_OUT


def test_unknown_card_is_reported_as_unknown_tag_and_changes_nothing() -> None:
    model = make_model()

    result = model.expect("reader-101", "DEADBEEF00", 0.0)

    assert result == ScanResult.UNKNOWN_TAG
    assert model.present == {}


def test_staff_card_authenticates_a_supervisor_without_a_visit() -> None:
    model = make_model()

    result = model.expect("reader-101", STAFF_TAG, 0.0)

    assert result == ScanResult.SUPERVISOR_AUTHENTICATED
    assert model.present == {}


def test_room_without_an_active_group_answers_no_active_group_and_keeps_the_visit() -> None:
    model = make_model()
    model.expect("reader-101", MAX_TAG, 0.0)

    result = model.expect("reader-103", MAX_TAG, 10.0)

    assert result == ScanResult.NO_ACTIVE_GROUP
    assert model.present == {"456": "1"}


def test_inactive_device_is_rejected() -> None:
    model = make_model()

    assert model.expect("reader-old", MAX_TAG, 0.0) == ScanResult.REJECTED


def test_model_can_start_from_who_is_already_present() -> None:
    model = make_model(present={"456": "2"})

    assert model.expect("reader-gym", MAX_TAG, 0.0) == ScanResult.CHECKED_OUT


# ---- the plan ------------------------------------------------------------------------------


def test_same_seed_gives_the_same_plan() -> None:
    options = PlanOptions(devices=4, students=15, duration_seconds=300, seed=7, flaky=0.1)

    first = build_plan(big_school(), options)
    second = build_plan(big_school(), options)

    assert first == second


def test_different_seeds_give_different_plans() -> None:
    first = build_plan(big_school(), PlanOptions(devices=4, students=15, seed=1))
    second = build_plan(big_school(), PlanOptions(devices=4, students=15, seed=2))

    assert first.scans != second.scans


def test_plan_covers_every_result_of_an_afternoon() -> None:
    plan = build_plan(
        big_school(), PlanOptions(devices=4, students=15, duration_seconds=600, seed=4)
    )

    results = set(plan.expected_counts())

    assert results >= {
        "checked_in",
        "checked_out",
        "transferred",
        "duplicate",
        "unknown_tag",
        "supervisor_authenticated",
        "no_active_group",
    }


def test_plan_stays_within_the_duration_in_time_order() -> None:
    plan = build_plan(big_school(), PlanOptions(devices=4, students=15, duration_seconds=120))

    times = [s.at_seconds for s in plan.scans]

    assert times == sorted(times)
    assert times[0] >= 0 and times[-1] < 120


def test_scans_of_one_card_are_spaced_beyond_the_debounce_except_double_taps() -> None:
    plan = build_plan(
        big_school(), PlanOptions(devices=4, students=15, duration_seconds=600, rate=2.0)
    )
    last: dict[str, float] = {}
    last_unchained: dict[str, float] = defaultdict(lambda: -1e9)

    for scan in plan.scans:
        if scan.chained:
            assert 0.2 <= scan.at_seconds - last[scan.subject] <= 0.9
        else:
            assert scan.at_seconds - last_unchained[scan.subject] >= 3.0 + 2.0
            assert scan.at_seconds - last.get(scan.subject, -1e9) > 3.0
            last_unchained[scan.subject] = scan.at_seconds
        last[scan.subject] = scan.at_seconds


def test_double_taps_follow_an_accepted_scan_on_the_same_reader_and_expect_duplicate() -> None:
    plan = build_plan(big_school(), PlanOptions(devices=4, students=15, duration_seconds=600))
    previous = {}

    doubles = 0
    for scan in plan.scans:
        if scan.chained:
            doubles += 1
            first = previous[scan.subject]
            assert scan.kind == ScanKind.DOUBLE_TAP
            assert scan.device_id == first.device_id and scan.tag == first.tag
            assert first.expected in ACCEPTED_RESULTS
            assert scan.expected == ScanResult.DUPLICATE
        previous[scan.subject] = scan

    assert doubles > 0


def test_unknown_cards_are_read_only_in_rooms_with_an_active_group() -> None:
    data = big_school()
    plan = build_plan(data, PlanOptions(devices=4, students=15, duration_seconds=600))

    unknown = [s for s in plan.scans if s.kind == ScanKind.UNKNOWN_CARD]

    assert unknown
    assert all(s.expected == ScanResult.UNKNOWN_TAG for s in unknown)
    rooms = {d.id: d.room_id for d in data.devices}
    assert all(rooms[s.device_id] in data.active_groups for s in unknown)


def test_final_model_matches_replaying_the_plan() -> None:
    data = big_school()
    plan = build_plan(data, PlanOptions(devices=4, students=15, duration_seconds=600, seed=9))
    model = PresenceModel.from_data(data)

    results = [model.expect(s.device_id, s.tag, s.at_seconds) for s in plan.scans]

    assert results == [s.expected for s in plan.scans]
    assert model.present == plan.present


def test_rate_asks_for_more_scans() -> None:
    slow = build_plan(big_school(), PlanOptions(duration_seconds=600, rate=0.1))
    fast = build_plan(big_school(), PlanOptions(duration_seconds=600, rate=1.0))

    assert len(slow.scans) < len(fast.scans)
    assert len(fast.scans) >= 0.8 * 600


def test_only_the_first_devices_and_students_take_part() -> None:
    plan = build_plan(big_school(), PlanOptions(devices=2, students=3, duration_seconds=300))

    assert [d.id for d in plan.devices] == ["reader-101", "reader-102"]
    students = {s.student_id for s in plan.scans if s.student_id}
    assert students <= {"101", "102", "103"}


def test_flaky_readers_get_deterministic_offline_windows_that_do_not_overlap() -> None:
    options = PlanOptions(devices=4, students=15, duration_seconds=600, flaky=0.2)

    plan = build_plan(big_school(), options)

    assert plan.offline == build_plan(big_school(), options).offline
    assert plan.offline
    by_device: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for window in plan.offline:
        assert window.end_seconds > window.start_seconds
        by_device[window.device_id].append((window.start_seconds, window.end_seconds))
    for windows in by_device.values():
        for (_, end), (start, _) in pairwise(windows):
            assert start > end


def test_flakiness_does_not_change_the_scans() -> None:
    steady = build_plan(big_school(), PlanOptions(duration_seconds=300, seed=5))
    flaky = build_plan(big_school(), PlanOptions(duration_seconds=300, seed=5, flaky=0.3))

    assert steady.scans == flaky.scans
    assert steady.offline == ()


def test_plan_without_active_devices_is_refused() -> None:
    data = data_from_import({"devices": [{"id": "r1", "room_id": 1, "active": False}]})

    with pytest.raises(ScenarioError, match="no active devices"):
        build_plan(data, PlanOptions())
