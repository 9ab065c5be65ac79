"""End of day against a real bridge: at DAY_END every open visit is closed once, with events,
and the next check-in succeeds."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from edge_bridge.models import Visit
from tests.integration.conftest import System

pytestmark = pytest.mark.integration

SCHMIDT, NOWAK, ADMIN = 1, 3, 4  # Schmidt supervises 124; Nowak leads home group 7
HOMEWORK = 124
BERLIN = ZoneInfo("Europe/Berlin")
LEAD_SECONDS = 12  # the day end is this far ahead of the bridge's start (slow under load)


def test_at_day_end_open_visits_close_once_with_events_and_a_new_check_in_succeeds(
    make_system: object,
) -> None:
    day_end = datetime.now(BERLIN) + timedelta(seconds=LEAD_SECONDS)
    system: System = make_system(env={"DAY_END": day_end.strftime("%H:%M:%S")})  # type: ignore[operator]
    supervisor = system.connected_stream(SCHMIDT)
    leader = system.connected_stream(NOWAK)
    with system.http() as http:
        for student_id in (401, 402):
            answer = http.post(
                f"/api/active/groups/{HOMEWORK}/visits",
                json={"student_id": student_id},
                headers=system.auth(SCHMIDT),
            )
            assert answer.status_code == 201, answer.text
    checkins = [supervisor.next_event() for _ in range(2)]
    assert [frame.event for frame in checkins] == ["student_checkin", "student_checkin"]
    assert datetime.now(BERLIN) < day_end, "set-up took longer than the lead: raise LEAD_SECONDS"

    closed = [supervisor.next_event(timeout=LEAD_SECONDS + 5) for _ in range(2)]
    heard = [leader.next_event(timeout=5) for _ in range(4)]

    assert [(f.event, f.json["data"]["source"]) for f in closed] == [
        ("student_checkout", "automated")
    ] * 2
    assert sorted(f.json["data"]["student_id"] for f in closed) == ["401", "402"]
    assert [f.event for f in heard].count("student_checkout") == 2  # the home-group leader too
    with Session(system.engine) as session:
        visits = session.exec(select(Visit).order_by(col(Visit.id))).all()
    assert [v.exit_reason for v in visits] == ["auto_checkout", "auto_checkout"]
    assert all(abs(v.exit_time - day_end) < timedelta(seconds=1) for v in visits)  # type: ignore[operator]

    with system.http() as http:
        again = http.post(
            f"/api/active/groups/{HOMEWORK}/visits",
            json={"student_id": 401},
            headers=system.auth(SCHMIDT),
        )
        record = http.get("/api/attendance", headers=system.auth(ADMIN)).json()

    assert again.status_code == 201, again.text
    assert supervisor.next_event().event == "student_checkin"
    max_day = next(r for r in record if r["student_id"] == "401")
    assert [s["exit_reason"] for s in max_day["stays"]] == ["auto_checkout", None]
